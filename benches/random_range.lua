-- wrk script: each request asks for a random LEN-byte range of a SIZE-byte
-- piece; half of the ranges start on a LEN boundary, half anywhere. The
-- sequence is the same on every run (fixed seed), so two servers measured
-- one after the other see the same requests.
--
--   wrk -t1 -c16 -d10s --latency -s benches/random_range.lua URL -- SIZE [LEN] [SEED]

local size, len

function init(args)
  size = tonumber(args[1])
  len = tonumber(args[2] or 1048576)
  if size == nil or size < len then
    error("random_range.lua: needs the piece size (>= LEN) after --")
  end
  math.randomseed(tonumber(args[3] or 20240601))
end

function request()
  local start
  if math.random() < 0.5 then
    start = math.random(0, math.floor((size - len) / len)) * len
  else
    start = math.random(0, size - len)
  end
  return wrk.format(nil, nil, { ["Range"] = "bytes=" .. start .. "-" .. (start + len - 1) })
end
