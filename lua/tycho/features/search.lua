--- tycho.features, search across teams: every team's views found by words
-- in their name, owner, tags, description or feature names, a page at a
-- time, each view's features flagged when another view of its entity
-- declares one of the same name and type (the catalog's feature index,
-- features/duplicates.lua), beside fs:list's duplicates by definition.
--
--   fs:search { q = "spam stats", owner = "trust", limit = 50, offset = 0 }
local duplicates = require "tycho.features.duplicates"
local json = require "tycho.util.json"
local options = require "tycho.util.options"

local M = {}
local FS = {}

M.MAX_LIMIT = 500

-- The lower-cased words of q (at most 8: a longer query narrows nothing).
local function words_of(q)
  local out = {}
  for w in tostring(q or ""):lower():gmatch("%S+") do
    if #out < 8 then out[#out + 1] = w end
  end
  return out
end

local function haystack(v)
  return table.concat({ v.name, v.owner or "", v.description or "", table.concat(v.tags or {}, " "),
                        table.concat(v.features or {}, " ") }, "\n"):lower()
end

-- Whether every word is in the view's text; and whether all are in its name.
local function matches(v, words)
  local text, name = haystack(v), v.name:lower()
  local in_name = true
  for _, w in ipairs(words) do
    if not text:find(w, 1, true) then return false end
    if not name:find(w, 1, true) then in_name = false end
  end
  return true, in_name
end

-- "feature = view:feature" for each feature of entry that another view of
-- its entity declares with the same name and type.
local function same_name(fs, entry)
  local out = {}
  for _, fname in ipairs(entry.features) do
    local hits = duplicates.views_with_feature(fs.store, entry.entity, fname)
    local mine
    for _, h in ipairs(hits) do if h.view == entry.name then mine = h.type end end
    for _, h in ipairs(hits) do
      if h.view ~= entry.name and h.type == mine then out[#out + 1] = fname .. " = " .. h.view .. ":" .. fname end
    end
  end
  return out
end

-- Each owner among the matches with its number of views, most first.
local function owners_of(found)
  local count, out = {}, {}
  for _, v in ipairs(found) do
    local o = v.owner or "-"
    if not count[o] then out[#out + 1] = o end
    count[o] = (count[o] or 0) + 1
  end
  table.sort(out, function(a, b)
    if count[a] ~= count[b] then return count[a] > count[b] end
    return a < b
  end)
  for i, o in ipairs(out) do out[i] = { owner = o, views = count[o] } end
  return out
end

--- Views found by opts.q (words, each in a view's name, owner, tags,
-- description or feature names, case-insensitive), of opts.owner and with
-- opts.tag when given; views whose name holds every word first, then by
-- name. opts.limit (50; 1 to 500) and opts.offset (0) page them. Returns {
-- total, offset, limit, next_offset (nil on the last page), views = {
-- fs:list's entries, with same_name = { "feature = view:feature" } },
-- owners = { { owner, views } } (over every match, for a team filter) },
-- or nil, message, "invalid".
function FS:search(opts)
  opts = opts or {}
  local limit, offset, code = options.page(opts, 50, M.MAX_LIMIT)
  if not limit then return nil, offset, code end
  local words, found, first = words_of(opts.q), {}, {}
  for _, v in ipairs(self:list { owner = opts.owner, tag = opts.tag }) do
    local ok, in_name = matches(v, words)
    if ok then
      found[#found + 1] = v
      first[v] = in_name
    end
  end
  table.sort(found, function(a, b)
    if first[a] ~= first[b] then return first[a] end
    return a.name < b.name
  end)
  local page = {}
  for i = offset + 1, math.min(#found, offset + limit) do
    local v = found[i]
    v.same_name = same_name(self, v)
    if #v.same_name == 0 then v.same_name = json.empty_array end
    page[#page + 1] = v
  end
  return { total = #found, offset = offset, limit = limit,
           next_offset = offset + limit < #found and offset + limit or nil,
           views = #page > 0 and page or json.empty_array,
           owners = #found > 0 and owners_of(found) or json.empty_array }
end

M.methods = FS

return M
