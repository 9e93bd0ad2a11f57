-- The console's bundle is embedded in the binary (console/embed.cmake) and
-- served from memory under /ui/; a binary built without node holds none,
-- and /ui/ says so while the JSON routes answer all the same.
local http = require "tycho.http"
local internal = require "tycho.internal"
local console_routes = require "tycho.serve.console_routes"

local function get(handler, path)
  return handler({ method = "GET", path = path, query_string = "", body = "", headers = {}, peer = "127.0.0.1:1" })
end

describe("the embedded console", function()
  local handle = http.app():handler()

  -- First: the routes keep the files they served, and would not ask again.
  it("says the console was not built when the binary holds none", function()
    local embedded = internal.console_asset
    internal.console_asset = function() return nil end
    local ok, status, _, body = pcall(get, http.app():handler(), "/ui/")
    internal.console_asset = embedded
    assert(ok, status)
    assert.equal(200, status)
    assert.matches("The console was not built", body, 1, true)
    assert.equal(404, (get(http.app():handler(), "/ui/assets/nothing.js")))
  end)

  it("serves the bundle the build embedded, with the console's CSP", function()
    local js = internal.console_asset("console.js")
    if not js then return pending("this tycho was built without node: it holds no console") end
    local status, headers, body = get(handle, "/ui/assets/console.js")
    assert.equal(200, status)
    assert.equal(js, body)
    assert.matches("^text/javascript", headers["Content-Type"])
    assert.equal(console_routes.CSP, headers["Content-Security-Policy"])
    assert.equal(internal.console_asset("console.css"), select(3, get(handle, "/ui/assets/console.css")))
    assert.matches('src="/ui/assets/console.js"', select(3, get(handle, "/ui/")), 1, true)
  end)

  it("answers 404 for a file it does not hold", function()
    assert.equal(404, (get(handle, "/ui/assets/other.js")))
    assert.equal(404, (get(handle, "/ui/assets/console.exe")))
    assert.is_nil(internal.console_asset("../CMakeLists.txt"))
  end)

end)
