-- Argo CD health of pinsync's StorageBackend and PinSet (PinSet/health.lua is a link to this
-- file: both kinds write the same kstatus trio, and only a StorageBackend has Healthy).
-- Argo runs it on gopher-lua (Lua 5.1) with the object in the global `obj`.
-- The order matters: a verdict about an older generation is no verdict, Stalled outranks an
-- unhealthy backend, and both outrank Ready (a backend may be Ready with a failed probe).
local hs = {status = "Progressing", message = "waiting for the operator to report status"}

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true"
  return hs
end
if obj.status == nil then
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local found = {}
for _, condition in ipairs(obj.status.conditions or {}) do
  found[condition.type] = condition
end

local function says(name, status)
  return found[name] ~= nil and found[name].status == status
end

local function explain(condition)
  local text = condition.reason or condition.type
  if condition.message ~= nil and condition.message ~= "" then
    text = text .. ": " .. condition.message
  end
  return text
end

if says("Stalled", "True") then
  hs.status = "Degraded"
  hs.message = explain(found.Stalled)
elseif says("Healthy", "False") then
  hs.status = "Degraded"
  hs.message = explain(found.Healthy)
elseif says("Ready", "True") then
  hs.status = "Healthy"
  hs.message = explain(found.Ready)
elseif says("Reconciling", "True") then
  hs.message = explain(found.Reconciling)
elseif found.Ready ~= nil then
  hs.message = explain(found.Ready)
end
return hs
