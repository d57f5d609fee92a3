-- wrk script: a rank and reward mix against Marquee, as a catalog front end would send it.
--
--   wrk -t2 -c8 -d30s -s bench/rank_reward.lua http://127.0.0.1:8000 -- <reward_share> <slots>
--
-- Each connection ranks a row for a viewer (POST /v1/rank, ids and hours varying); after a row's
-- answer, with probability <reward_share>, one of its titles is rewarded (POST
-- /v1/events/{id}/reward) by the next request that thread sends. Every thread counts what it sent
-- and what came back, and done() prints one JSON line with the totals and latency percentiles
-- (all requests; wrk is closed-loop, so a slow answer delays the requests behind it). Answers are
-- told apart by status: a row is a 200, a stored reward a 201; anything else is a failure.

local reward_share = 0.5
local slots = 10
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  reward_share = tonumber(args[1] or reward_share)
  slots = tonumber(args[2] or slots)
  math.randomseed(os.time() + id * 7919)
  queue = {}  -- rewards to send: {event_id, title_id}
  rank_sent, reward_sent, ranks, rewards, failed, counter = 0, 0, 0, 0, 0, 0
end

local hours_features = '"country": "BR", "device": "tv", "history_genres": ["comedy", "heist"], "recent_searches": ["space"]'

function request()
  if #queue > 0 then
    local item = table.remove(queue, 1)
    reward_sent = reward_sent + 1
    return wrk.format("POST", "/v1/events/" .. item[1] .. "/reward", {["Content-Type"] = "application/json"},
                      '{"title_id": "' .. item[2] .. '", "value": 1.0}')
  end
  counter = counter + 1
  rank_sent = rank_sent + 1
  local body = string.format('{"user": {"id": "u-%d-%d", "features": {%s, "hour": %d}}, "slots": %d}',
                             id, counter % 1000, hours_features, counter % 24, slots)
  return wrk.format("POST", "/v1/rank", {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status == 201 then
    rewards = rewards + 1
    return
  end
  if status ~= 200 then
    failed = failed + 1
    return
  end
  ranks = ranks + 1
  if math.random() < reward_share then
    local event_id = string.match(body, '"event_id":%s*"([^"]+)"')
    local titles = {}
    for title_id in string.gmatch(body, '"title_id":%s*"([^"]+)"') do table.insert(titles, title_id) end
    if event_id and #titles > 0 then
      table.insert(queue, {event_id, titles[math.random(#titles)]})
    end
  end
end

function done(summary, latency, requests)
  local totals = {rank_sent = 0, reward_sent = 0, ranks = 0, rewards = 0, failed = 0}
  for _, thread in ipairs(threads) do
    for key, _ in pairs(totals) do totals[key] = totals[key] + thread:get(key) end
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "rank_sent": %d, "reward_sent": %d, "ranks": %d, "rewards": %d, ' ..
    '"failed": %d, "socket_errors": %d, "p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6, totals.rank_sent, totals.reward_sent, totals.ranks, totals.rewards,
    totals.failed,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
