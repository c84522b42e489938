-- PATCH /products/{id} (a new name each time) for ids bench/seed.py made: prod_ and a zero-padded number below $PRODUCTS.
local count = tonumber(os.getenv("PRODUCTS") or "1000")
math.randomseed(os.time())
local sent = 0
request = function()
  sent = sent + 1
  local headers = { ["Content-Type"] = "application/json" }
  for name, value in pairs(wrk.headers) do headers[name] = value end
  return wrk.format("PATCH", string.format("/products/prod_%026d", math.random(0, count - 1)), headers,
    string.format('{"name":"Renamed during the outage %d"}', sent))
end
