"""The public surface, in whichever build `make test` runs: what `tba_guard` and the few public
modules export, that the docs import from nowhere else, what users may subclass (the compiled
build too), and signatures and docstrings readable at run time."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import tba_guard
from tba_guard import (
    CachedCredentials,
    Guard,
    Identity,
    Integration,
    MemoryReplayStore,
    MemoryTokenStore,
    ReplayKey,
    StaticCredentials,
    TBAError,
    TBAGuardMiddleware,
    Token,
    User,
)
from tests.support import (
    BASE_URL,
    NOW,
    ROOT,
    TOKEN_ID,
    Clock,
    echo_app,
    make_settings,
    oauth_header,
)

#: Type aliases (no run-time signature of their own) and enums (called with a value).
ALIASES_AND_ENUMS = frozenset({"OnError", "ErrorCode", "Step"})
RESOURCE = f"{BASE_URL}/app/site/hosting/restlet.nl?script=1&deploy=1"
#: Where users import from, as docs/api.md lists them. The layer folders (core, stores, guard,
#: asgi, tools) are not API: the next reorganisation may move anything in them.
PUBLIC_MODULES = (
    "tba_guard",
    "tba_guard.checks",
    "tba_guard.database",
    "tba_guard.explain",
    "tba_guard.oauth2",
    "tba_guard.redis",
    "tba_guard.sandbox",
    "tba_guard.serving",
    "tba_guard.testing",
)
#: Modules directly in the package that are not facades: the guard layer, the compiled build's
#: helper, `python -m tba_guard`.
NOT_FACADES = frozenset({"__init__", "__main__", "_compiled", "guard"})
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*```(?P<lang>[\w-]*)\s*$")
SPAN = re.compile(r"`([^`\n]+)`")
#: A dotted name under the package; one followed by `*` is a pattern (mutmut's), not a module.
MENTION = re.compile(r"\btba_guard(?:\.\w+)*(?![\w.]*\*)")


def signed_get() -> dict[str, str]:
    return {"Authorization": oauth_header("GET", RESOURCE)}


def module_of(dotted: str) -> str:
    """The module a dotted name is in: its longest prefix that is a module of the source."""
    parts = dotted.split(".")
    while len(parts) > 1:
        path = ROOT.joinpath(*parts)
        if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
            break
        parts.pop()
    return ".".join(parts)


def code_of(document: Path) -> tuple[list[str], list[str]]:
    """The code a page shows: its fenced blocks' lines and inline code spans; and its Python
    blocks, whole."""
    code: list[str] = []
    python: list[str] = []
    block: list[str] | None = None
    language = ""
    for line in document.read_text(encoding="utf-8").splitlines():
        fence = FENCE.match(line)
        if fence and block is None:
            block, language = [], fence["lang"]
        elif fence and block is not None:
            if language == "python":
                python.append("\n".join(block))
            block = None
        elif block is not None:
            block.append(line)
            code.append(line)
        else:
            code += SPAN.findall(line)
    return code, python


def modules_mentioned(document: Path) -> set[str]:
    """Every tba_guard module the page's code names: in a dotted name, an import string
    (`module:attribute`), or a Python block's `import` and `from … import`."""
    code, python = code_of(document)
    found = {module_of(name) for text in code for name in MENTION.findall(text)}
    for block in python:
        for node in ast.walk(ast.parse(textwrap.dedent(block))):
            if isinstance(node, ast.Import):
                found |= {module_of(a.name) for a in node.names if a.name.startswith("tba_guard")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tba_guard"):
                found |= {module_of(f"{node.module}.{a.name}") for a in node.names}
    return found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_the_docs_import_only_from_the_public_modules(document: Path) -> None:
    outside = sorted(modules_mentioned(document) - set(PUBLIC_MODULES))
    assert not outside, f"{document.name} points users at {outside}: use {PUBLIC_MODULES}"


def test_the_docs_scan_sees_a_layer_path_in_each_form_of_code(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Run `uvicorn --factory tba_guard.tools.demo:create_app`; see `tba_guard.core.checks`.\n"
        "```python\nfrom tba_guard import tools\nimport tba_guard.stores.memory\n```\n"
        "```sh\nmutate 'tba_guard.core.header*'\n```\n"
        "Prose is not code: tba_guard.asgi.flow.\n"
    )
    assert modules_mentioned(page) == {
        "tba_guard",  # the package that `from tba_guard import tools` imports from
        "tba_guard.tools.demo",
        "tba_guard.core.checks",
        "tba_guard.tools",
        "tba_guard.stores.memory",
    }


def test_the_api_reference_names_each_public_module_once() -> None:
    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `(tba_guard[\w.]*)` \|", api, flags=re.MULTILINE)
    sections = re.findall(r"^## `(tba_guard[\w.]*)`$", api, flags=re.MULTILINE)
    assert sorted(listed) == list(PUBLIC_MODULES)
    assert sections == listed
    for name in tba_guard.__all__:  # documented where it is defined, under `tba_guard`
        assert re.search(rf"^::: tba_guard\.[\w.]+\.{name}$", api, flags=re.MULTILINE), name


def test_every_module_beside_the_layers_is_a_public_one() -> None:
    package = ROOT / "tba_guard"
    facades = {path.stem for path in package.glob("*.py")} - NOT_FACADES
    assert sorted(f"tba_guard.{name}" for name in facades) == sorted(PUBLIC_MODULES[1:])


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_module_exports_sorted_names_that_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported), name
    missing = [attribute for attribute in exported if getattr(module, attribute, None) is None]
    assert not missing, f"{name}.__all__ names what it does not have: {missing}"
    assert (module.__doc__ or "").strip(), f"{name} has no docstring"


def test_every_exported_name_exists_and_all_is_sorted() -> None:
    assert tba_guard.__all__ == sorted(tba_guard.__all__)
    for name in tba_guard.__all__:
        assert getattr(tba_guard, name) is not None, name


@pytest.mark.parametrize("name", tba_guard.__all__)
def test_every_public_callable_has_a_readable_signature(name: str) -> None:
    exported = getattr(tba_guard, name)
    if not (isinstance(exported, type) or callable(exported)) or name in ALIASES_AND_ENUMS:
        return
    is_error = isinstance(exported, type) and issubclass(exported, Exception)
    if is_error and "__init__" not in vars(exported):  # the message alone, as Exception's
        return
    signature = inspect.signature(exported)
    assert all(p.name for p in signature.parameters.values())


@pytest.mark.parametrize("name", tba_guard.__all__)
def test_every_public_class_and_function_has_a_docstring(name: str) -> None:
    exported = getattr(tba_guard, name)
    if name not in ALIASES_AND_ENUMS - {"ErrorCode", "Step"}:
        assert (exported.__doc__ or "").strip(), f"{name} has no docstring at run time"


async def test_a_replay_store_subclass_is_the_one_the_guard_claims_with() -> None:
    claimed: list[ReplayKey] = []

    class CountingStore(MemoryReplayStore):
        async def claim(self, key: ReplayKey, ttl: int) -> bool:
            claimed.append(key)
            return await super().claim(key, ttl)

    guard = Guard(make_settings(), replay_store=CountingStore(clock=Clock()), clock=Clock())
    identity = await guard.verify_request("GET", RESOURCE, signed_get())
    assert identity.token_id == TOKEN_ID
    assert len(claimed) == 1


async def test_credential_store_subclasses_answer_for_the_guard() -> None:
    settings = make_settings()

    class Blocking(StaticCredentials):
        async def integration(self, consumer_key: str) -> Integration | None:
            found = await super().integration(consumer_key)
            return dataclasses.replace(found, state="blocked") if found else None

    guard = Guard(settings, credentials=Blocking(settings.integrations, settings.tokens))
    with pytest.raises(TBAError) as raised:
        await Guard(settings, credentials=guard.credentials, clock=Clock()).verify_request(
            "GET", RESOURCE, signed_get()
        )
    assert raised.value.code.value == "IntegrationBlocked"

    looked_up: list[str] = []

    class Cached(CachedCredentials):
        async def token(self, token_id: str) -> Token | None:
            looked_up.append(token_id)
            return await super().token(token_id)

    cached = Cached(StaticCredentials(settings.integrations, settings.tokens), ttl=5)
    await Guard(settings, credentials=cached, clock=Clock()).verify_request(
        "GET", RESOURCE, signed_get()
    )
    assert looked_up == [TOKEN_ID]


async def test_a_guard_subclass_runs_its_own_audit() -> None:
    heard: list[str] = []

    class Auditing(Guard):
        def audit(self, request: Any, error: TBAError | None) -> None:
            heard.append("rejected" if error else "accepted")
            super().audit(request, error)

    await Auditing(make_settings(), clock=Clock()).verify_request("GET", RESOURCE, signed_get())
    assert heard == ["accepted"]


def test_a_middleware_subclass_is_the_one_that_serves() -> None:
    exempted: list[str] = []

    class Exempting(TBAGuardMiddleware):
        def is_exempt(self, scope: Any) -> bool:
            exempted.append(scope["path"])
            return scope["path"] == "/health" or super().is_exempt(scope)

    app = Exempting(echo_app(), guard=Guard(make_settings(), clock=Clock()))
    with TestClient(app, base_url=BASE_URL) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/private").status_code == 401
    assert exempted == ["/health", "/private"]


def test_record_subclasses_are_records() -> None:
    @dataclasses.dataclass(frozen=True, repr=False)  # keeps Token's repr, which hides the secret
    class TaggedToken(Token):
        tag: str = ""

    token = TaggedToken("tk", "ts-secret-long-enough", "ck", tag="imported")
    assert (token.token_id, token.tag) == ("tk", "imported")
    assert "ts-secret" not in repr(token)

    class Admin(User):
        def may_use(self, role: str) -> bool:
            return True

    assert Admin("e1", "Ada").may_use("Administrator")

    class Named(Identity):
        def label(self) -> str:
            return f"{self.entity}@{self.realm}"

    assert Named("ck", "tk", "123", "e1", "r1").label() == "e1@123"

    class Quiet(MemoryTokenStore):
        pass

    assert isinstance(Quiet(), MemoryTokenStore)
    assert NOW > 0
