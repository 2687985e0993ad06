-- wrk script: POST small market orders, alternating buy and sell so the net
-- position stays flat. The same bodies go to the echo server.
-- usage: wrk ... -s post.lua URL -- ACCOUNT_ID [TOKEN]
local bodies = {}
local i = 0

function init(args)
  local account = args[1] or "account"
  bodies[0] = '{"account_id":"' .. account .. '","instrument":"EUR_USD","units":100,"side":"buy","type":"market"}'
  bodies[1] = '{"account_id":"' .. account .. '","instrument":"EUR_USD","units":100,"side":"sell","type":"market"}'
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[2] then
    wrk.headers["Authorization"] = "Bearer " .. args[2]
  end
end

function request()
  i = 1 - i
  return wrk.format(nil, nil, nil, bodies[i])
end
