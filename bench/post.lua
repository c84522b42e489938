-- POST /products with a small product body.
wrk.method = "POST"
wrk.body = '{"name":"Bench product","type":"bench","metadata":{"color":"red","size":"M"}}'
wrk.headers["Content-Type"] = "application/json"
