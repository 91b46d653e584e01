-- wrk script: every request carries the next pre-signed Authorization header (fresh nonce),
-- read from the file named by the first script argument. Run with one thread (-t1).
local headers = {}
local next_index = 1

init = function(args)
  for line in io.lines(args[1]) do
    headers[#headers + 1] = line
  end
end

request = function()
  local header = headers[next_index]
  next_index = next_index + 1
  if next_index > #headers then
    next_index = 1 -- exhausted: replays follow, and the run is flagged by its non-2xx count
  end
  return wrk.format("GET", "/hello", { ["Authorization"] = header })
end
