-- wrk script: every request carries the next pre-signed Authorization header (fresh nonce),
-- read from the file named by the first script argument. Run with one thread (-t1).
-- Optional further arguments give the request's shape (bench_server.py): method, path with
-- query, a file holding the body ("-" for none), its Content-Type ("-" for none), and the
-- Connection header ("-" for wrk's default keep-alive; "close" makes wrk reconnect each time).
-- Without them the request is bench_http.py's GET /hello.
local headers = {}
local next_index = 1
local method, path, body, content_type, connection = "GET", "/hello", nil, nil, nil

init = function(args)
  for line in io.lines(args[1]) do
    headers[#headers + 1] = line
  end
  if args[2] then method = args[2] end
  if args[3] then path = args[3] end
  if args[4] and args[4] ~= "-" then
    local file = assert(io.open(args[4], "rb"))
    body = file:read("*a")
    file:close()
  end
  if args[5] and args[5] ~= "-" then content_type = args[5] end
  if args[6] and args[6] ~= "-" then connection = args[6] end
end

request = function()
  local header = headers[next_index]
  next_index = next_index + 1
  if next_index > #headers then
    next_index = 1 -- exhausted: replays follow, and the run is flagged by its non-2xx count
  end
  local sent = { ["Authorization"] = header }
  if content_type then sent["Content-Type"] = content_type end
  if connection then sent["Connection"] = connection end
  return wrk.format(method, path, sent, body)
end
