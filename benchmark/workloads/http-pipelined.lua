-- wrk script for the http-pipelined workload: every write carries DEPTH
-- keep-alive GETs (16 unless GAIO_PIPELINE_DEPTH says otherwise); wrk counts
-- each response, and writes again once all DEPTH are back.
local depth = tonumber(os.getenv("GAIO_PIPELINE_DEPTH") or "16")
local batch

init = function(args)
  local requests = {}
  for i = 1, depth do requests[i] = wrk.format(nil, "/") end
  batch = table.concat(requests)
end

request = function()
  return batch
end
