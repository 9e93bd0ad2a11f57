-- docs/API.md is generated from the doc comments (tools/api_reference.lua):
-- this spec regenerates it, so a public function without a comment, or a
-- reference that no longer matches the code, fails here.
local testing = require "tycho.testing"

describe("the API reference", function()
  it("documents every public function and matches docs/API.md", function()
    local code, out, err = testing.run({ "run", "tools/api_reference.lua" })
    assert.equal(0, code, err)
    local f = assert(io.open("docs/API.md"))
    local committed = f:read("*a")
    f:close()
    assert(committed == out, "docs/API.md is stale: regenerate it with "
      .. "`tycho run tools/api_reference.lua > docs/API.md`")
  end)
end)
