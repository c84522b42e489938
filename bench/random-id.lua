-- GET /products/{id} for ids bench/seed.py made: prod_ and a zero-padded number below $PRODUCTS.
local count = tonumber(os.getenv("PRODUCTS") or "1000")
math.randomseed(os.time())
request = function()
  return wrk.format("GET", string.format("/products/prod_%026d", math.random(0, count - 1)))
end
