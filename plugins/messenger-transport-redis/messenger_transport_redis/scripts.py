"""The Lua scripts the transport runs on the server, each atomic.

They are loaded once per connection target (``SCRIPT LOAD``) and called by SHA1 (``EVALSHA``);
a server that forgot them (a restart) answers ``NOSCRIPT`` and they are loaded again.
"""

from __future__ import annotations

import hashlib

import attrs

__all__ = [
    "HAND_BACK",
    "KEEPALIVE",
    "MOVE_DUE",
    "PRUNE_CONSUMERS",
    "RELEASE_CONSUMER",
    "SCRIPTS",
    "Script",
]


@attrs.frozen
class Script:
    """A script's source and its SHA1 (what ``EVALSHA`` takes)."""

    name: str
    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode("utf-8"), usedforsecurity=False).hexdigest()


MOVE_DUE = Script(
    "move_due",
    """
-- KEYS: delay queue (sorted set), stream. ARGV: now (epoch ms), at most how many, MAXLEN (0: none).
-- Moves the due members into the stream in due order. Atomic: two consumers racing for the
-- same due member cannot both move it, and a member is never removed without being added.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local maxlen = tonumber(ARGV[3])
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  if maxlen > 0 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 'message', member)
  else
    redis.call('XADD', KEYS[2], '*', 'message', member)
  end
end
return #due
""",
)

KEEPALIVE = Script(
    "keepalive",
    """
-- KEYS: stream. ARGV: group, consumer, entry id.
-- Resets the entry's idle time if this consumer still holds it: 1; 0 if another consumer
-- claimed it meanwhile (or it is settled), which then is left alone.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then
  return 0
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
""",
)

RELEASE_CONSUMER = Script(
    "release_consumer",
    """
-- KEYS: stream. ARGV: group, consumer.
-- Deletes the consumer from the group if it holds no pending entry (deleting one that does
-- would strand its entries): 1 if deleted.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if not ok or #pending > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
""",
)

PRUNE_CONSUMERS = Script(
    "prune_consumers",
    """
-- KEYS: stream. ARGV: group, this consumer, idle threshold (ms).
-- Deletes consumers that hold no pending entry and have been idle longer than the threshold:
-- workers that died (or were killed) after their entries were claimed. A live consumer
-- deleted this way loses nothing and is recreated by its next read.
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then
  return 0
end
local threshold = tonumber(ARGV[3])
local deleted = 0
for _, consumer in ipairs(consumers) do
  local fields = {}
  for i = 1, #consumer, 2 do
    fields[consumer[i]] = consumer[i + 1]
  end
  if fields['name'] ~= ARGV[2] and fields['pending'] == 0 and fields['idle'] > threshold then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], fields['name'])
    deleted = deleted + 1
  end
end
return deleted
""",
)

HAND_BACK = Script(
    "hand_back",
    """
-- KEYS: stream. ARGV: group, consumer, idle time to set (ms), at most how many entries.
-- Marks this consumer's pending entries as idle for that long (XCLAIM to itself with IDLE,
-- JUSTID: the delivery count is not raised), so that the next XAUTOCLAIM of any consumer of
-- the group takes them at once instead of after redeliver_timeout: a stopping worker hands
-- back what it fetched and did not handle. Returns how many entries were handed back.
local ok, pending = pcall(
  redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', tonumber(ARGV[4]), ARGV[2])
if not ok then
  return 0
end
for first = 1, #pending, 100 do
  local command = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
  for i = first, math.min(first + 99, #pending) do
    command[#command + 1] = pending[i][1]
  end
  command[#command + 1] = 'IDLE'
  command[#command + 1] = ARGV[3]
  command[#command + 1] = 'JUSTID'
  redis.call(unpack(command))
end
return #pending
""",
)

SCRIPTS: tuple[Script, ...] = (
    MOVE_DUE,
    KEEPALIVE,
    RELEASE_CONSUMER,
    PRUNE_CONSUMERS,
    HAND_BACK,
)
"""Every script, for loading them all at once."""
