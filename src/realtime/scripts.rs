//! The cluster's Redis scripts: each one is a single atomic step (one round trip), in Redis's one
//! order of execution, which is also the order every node receives what they publish.
//!
//! Keys (one Redis, not Redis Cluster: scripts touch keys they compute):
//! - `wsgate:last:{stream}` the last id of a room or conversation (ids are Redis's clock in ms
//!   shifted left by ten bits, bumped past the last: increasing, and past any id stored before);
//! - `wsgate:win:{room}` the recovery window: a stream capped at `WSGATE_RECOVERY_MESSAGES`, whose
//!   entry ids are the message ids, expiring `WSGATE_RECOVERY_SECS` after the last message;
//! - `wsgate:pu:{room}` presence: user -> sockets subscribed on every live node;
//! - `wsgate:np:{node}` one node's share of it: `room US user` -> sockets, so a dead node's share
//!   can be taken off;
//! - `wsgate:nodes` node -> heartbeat expiry (ms), a sorted set; `wsgate:nodes:beat` when any
//!   node last beat (ms), which tells a silence of the whole cluster from one node's death;
//! - `wsgate:op:{process}:{n}` a presence update that ran, kept a minute for its retries;
//! - channel `wsgate:bus` everything every node delivers; `wsgate:node:{process}` one node's
//!   answers to its subscriptions.
//!
//! Separator in payloads and fields: ASCII 31 (unit separator), which room ids and usernames
//! cannot contain and serialized JSON never contains raw.

/// What every script may call: Redis's clock in ms, and taking sockets of a user off a room's
/// presence (with `left` on the bus when that was the user's last one anywhere).
macro_rules! lua {
    ($body:literal) => {
        concat!(
            r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function drop_presence(bus, room, user, sockets)
  local pu = 'wsgate:pu:' .. room
  local n = redis.call('HINCRBY', pu, user, -sockets)
  if n <= 0 then
    redis.call('HDEL', pu, user)
    if n == 0 then
      redis.call('PUBLISH', bus, 'l\31' .. room .. '\31' .. user .. '\31' ..
        '{"type":"left","room":"' .. room .. '","user":"' .. user .. '"}')
    end
  end
end
"#,
            $body
        )
    };
}

/// Publishes a room's message or event: next id, window, channel. Returns `{id, ts}`.
/// KEYS: last, win, bus. ARGV: room, head, mid, tail, window cap, window ttl ms.
pub const PUBLISH: &str = lua!(
    r#"
local ms = now_ms()
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local id = math.max(last + 1, ms * 1024)
local ids = string.format('%.0f', id)
local mss = string.format('%.0f', ms)
local keep = tonumber(ARGV[6])
redis.call('SET', KEYS[1], ids, 'PX', keep)
local frame = ARGV[2] .. ids .. ARGV[3] .. mss .. ARGV[4]
local cap = tonumber(ARGV[5])
if cap > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', cap, ids .. '-0', 'f', frame, 't', mss)
  redis.call('PEXPIRE', KEYS[2], keep)
end
redis.call('PUBLISH', KEYS[3], 'm\31' .. ARGV[1] .. '\31' .. ids .. '\31' .. frame)
return {ids, mss}
"#
);

/// A direct message: next id of the conversation, channel. Returns `{id, ts}`.
/// KEYS: last, bus. ARGV: from, to, head, mid, tail, ttl ms of the last id.
pub const DIRECT: &str = lua!(
    r#"
local ms = now_ms()
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local id = math.max(last + 1, ms * 1024)
local ids = string.format('%.0f', id)
local mss = string.format('%.0f', ms)
redis.call('SET', KEYS[1], ids, 'PX', tonumber(ARGV[6]))
local frame = ARGV[3] .. ids .. ARGV[4] .. mss .. ARGV[5]
redis.call('PUBLISH', KEYS[2], 'd\31' .. ARGV[1] .. '\31' .. ARGV[2] .. '\31' .. frame)
return {ids, mss}
"#
);

/// A socket subscribes: presence (with `joined` on the bus for the user's first socket anywhere),
/// and the answer on the node's own channel, after everything published before it: the snapshot,
/// the room's last id, and the recovery. Refused with `NODE` when the node is not registered.
/// KEYS: pu, np, win, bus, node channel, nodes.
/// ARGV: room, user, token, conn, since ('' for none), replay allowed ('1'/'0'), age ms, node,
/// most bytes of frames a replay may carry.
pub const SUBSCRIBE: &str = lua!(
    r#"
if not redis.call('ZSCORE', KEYS[6], ARGV[8]) then
  return redis.error_reply('NODE this node is not registered')
end
local room, user = ARGV[1], ARGV[2]
redis.call('HINCRBY', KEYS[2], room .. '\31' .. user, 1)
if redis.call('HINCRBY', KEYS[1], user, 1) == 1 then
  redis.call('PUBLISH', KEYS[4], 'j\31' .. room .. '\31' .. user .. '\31' ..
    '{"type":"joined","room":"' .. room .. '","user":"' .. user .. '"}')
end
local users = redis.call('HKEYS', KEYS[1])
local last = ''
local top = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
if #top > 0 then last = top[1][1] end
local rec = ''
local replay = {}
if ARGV[5] ~= '' then
  rec = '0'
  local found = redis.call('XRANGE', KEYS[3], ARGV[5] .. '-0', ARGV[5] .. '-0')
  if #found > 0 then
    if tonumber(found[1][2][4]) >= now_ms() - tonumber(ARGV[7]) then
      local after = redis.call('XRANGE', KEYS[3], '(' .. ARGV[5] .. '-0', '+')
      if #after == 0 then
        rec = '1'
      elseif ARGV[6] == '1' then
        -- The answer travels as one pub/sub message: past ARGV[9] bytes, the client reads the
        -- history instead (Redis cuts a subscriber whose output buffer overflows).
        local bytes = 0
        for i, e in ipairs(after) do
          bytes = bytes + #e[2][2]
          replay[i] = e[2][2]
        end
        if bytes <= tonumber(ARGV[9]) then rec = '1' else replay = {} end
      end
    end
  end
end
redis.call('PUBLISH', KEYS[5], 's\31' .. ARGV[3] .. '\31' .. cjson.encode({
  room = room, user = user, conn = ARGV[4], node = ARGV[8], users = users, last = last,
  rec = rec, replay = replay }))
return 1
"#
);

/// Whether `since` is still in a room's window (for a socket subscribed already), and presence.
/// KEYS: pu, win. ARGV: since ('' for none), age ms. Returns `{found '1'/'0', users...}`.
pub const CHECK: &str = lua!(
    r#"
local found = '0'
if ARGV[1] ~= '' then
  local e = redis.call('XRANGE', KEYS[2], ARGV[1] .. '-0', ARGV[1] .. '-0')
  if #e > 0 then
    if tonumber(e[1][2][4]) >= now_ms() - tonumber(ARGV[2]) then found = '1' end
  end
end
local out = {found}
for _, u in ipairs(redis.call('HKEYS', KEYS[1])) do out[#out + 1] = u end
return out
"#
);

/// Sockets of one user on one node stop being subscribed to rooms (one room argument per socket):
/// `left` on the bus where it was the user's last socket anywhere. A node no longer registered
/// (it was declared dead, and its share taken off) changes nothing, and so does a retry of an
/// operation that ran (its reply was lost): the operation's key says it ran.
/// KEYS: np, bus, nodes, operation. ARGV: node, user, ms the operation key is kept, room...
pub const LEAVE: &str = lua!(
    r#"
if not redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 0 end
if not redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[3]) then return 1 end
local user = ARGV[2]
for i = 4, #ARGV do
  local room = ARGV[i]
  local field = room .. '\31' .. user
  local c = tonumber(redis.call('HGET', KEYS[1], field) or '0')
  if c > 0 then
    if c == 1 then redis.call('HDEL', KEYS[1], field) else redis.call('HINCRBY', KEYS[1], field, -1) end
    drop_presence(KEYS[2], room, user, 1)
  end
end
return 1
"#
);

/// Renews a node's heartbeat (registers it when ARGV[3] is '1'). Returns `{was registered 1/0,
/// dead nodes...}`. KEYS: nodes, last beat. ARGV: node, ms until it counts as dead, first
/// ('1'/'0'), the heartbeat interval in ms.
///
/// A node is dead when the others kept beating and it did not. When nobody beat for longer than
/// two intervals (Redis was paused or restarted from disk, the whole host froze, the clock jumped
/// forward), that silence is nobody's fault: every deadline moves on by it, less the one interval
/// a node may be silent anyway, before anyone is judged. Such an event never buries the nodes
/// that lived through it, and a dead node's deadline still comes, an interval per beat at least.
pub const HEARTBEAT: &str = lua!(
    r#"
local ms = now_ms()
local interval = tonumber(ARGV[4])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
redis.call('SET', KEYS[2], ms)
if last > 0 and ms - last > 2 * interval then
  local gap = ms - last - interval
  local all = redis.call('ZRANGE', KEYS[1], 0, -1)
  for _, n in ipairs(all) do redis.call('ZINCRBY', KEYS[1], gap, n) end
end
local had = redis.call('ZSCORE', KEYS[1], ARGV[1])
-- A node that was buried is not registered again under the same id: it must repair (and come
-- back as a new generation), even when the reply that said so was lost.
if not had and ARGV[3] ~= '1' then return {0} end
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[1])
local out = {had and 1 or 0}
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ms)) do
  if n ~= ARGV[1] then out[#out + 1] = n end
end
return out
"#
);

/// Takes a node's share off the presence (`left` where it was a user's last socket), once: the
/// node's registration is removed first, and only the caller that removed it does the rest.
/// With ARGV[2] '1' (a node reported dead by a heartbeat), not a node that renewed meanwhile: a
/// heartbeat queued behind a pause may land between the report and the burial.
/// KEYS: nodes, bus. ARGV: node, only if expired ('1'/'0'). Returns how many presence entries it
/// removed (or -1: done before, or renewed).
pub const BURY: &str = lua!(
    r#"
if ARGV[2] == '1' then
  local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if deadline and tonumber(deadline) >= now_ms() then return -1 end
end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 and redis.call('EXISTS', 'wsgate:np:' .. ARGV[1]) == 0 then
  return -1
end
local np = 'wsgate:np:' .. ARGV[1]
local all = redis.call('HGETALL', np)
for i = 1, #all, 2 do
  local sep = string.find(all[i], '\31', 1, true)
  local room = string.sub(all[i], 1, sep - 1)
  drop_presence(KEYS[2], room, string.sub(all[i], sep + 1), tonumber(all[i + 1]))
end
redis.call('DEL', np)
return #all / 2
"#
);

/// A deleted room: its window goes, and every node ends its subscriptions.
/// KEYS: win, bus. ARGV: room.
pub const DELETE_ROOM: &str = lua!(
    r#"
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[2], 'x\31' .. ARGV[1])
return 1
"#
);
