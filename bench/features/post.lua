-- wrk script for bench/features/run: every request is the same Feast-style
-- online read of one entity and the 10 features of view `o`.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"features":["o:f1","o:f2","o:f3","o:f4","o:f5","o:f6","o:f7","o:f8","o:f9","o:f10"],'
  .. '"entities":{"key":["k7"]}}'
