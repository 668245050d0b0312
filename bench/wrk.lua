-- The wrk script of `make bench`'s HTTP rows: POST /v1/chat of the Express and
-- FastAPI examples (validate in the middleware, then a charge in the route), each
-- request with a small JSON body and the bearer key of a key picked at random from
-- the file named by BENCH_WRK_KEYS (one raw key a line; a file with one key is the
-- hot-key case). wrk loads this script once per thread, so each thread reads the
-- file and has its own random sequence.
local keys = {}
for line in io.lines(os.getenv("BENCH_WRK_KEYS")) do
  if #line > 0 then keys[#keys + 1] = line end
end
assert(#keys > 0, "BENCH_WRK_KEYS names an empty file")
math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)

local body = '{"prompt": "hello"}'

request = function()
  local key = keys[math.random(#keys)]
  return wrk.format("POST", "/v1/chat", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
  }, body)
end
