-- wrk script for the board's post scenarios (bench/run.ts passes it with -s).
-- Every request posts the page's form, urlencoded, as a browser does.
-- A static request: wrk builds it once, so the load generator stays cheap.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "message=Hello+from+the+benchmark%21+A+message+of+ordinary+length%2C+kept+on+disk."
