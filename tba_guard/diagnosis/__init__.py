"""Why a request was rejected and what to do: the layer above the guard that `explain` and the
development hints run after a rejection, and that verifying a request never loads."""
