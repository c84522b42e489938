-- GET /products/{id} for ids bench/seed.py made: prod_ and a zero-padded number below $PRODUCTS; $PREFIX goes
-- before the path (`/api` for the Database Service).
local count = tonumber(os.getenv("PRODUCTS") or "1000")
local prefix = os.getenv("PREFIX") or ""
math.randomseed(os.time())
request = function()
  return wrk.format("GET", string.format("%s/products/prod_%026d", prefix, math.random(0, count - 1)))
end
