"""What the provider mocks share: records of what clients did, kept as
JSON files in a state directory, and a change counter that
GET /_mock/state?since=V&timeout=S long-polls."""

import asyncio
import datetime
import json
import os
import time


def now_iso():
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (
        now.microsecond // 1000)


class Registry:
    """The change counter and the state directory; a mock's subclass
    keeps its lists of records and says how they are shown."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.version = 0
        self.next_id = 1
        self.changed = asyncio.get_running_loop().create_future()

    def take_id(self):
        rid = self.next_id
        self.next_id += 1
        return rid

    def bump(self):
        self.version += 1
        if not self.changed.done():
            self.changed.set_result(None)
        self.changed = asyncio.get_running_loop().create_future()

    async def wait_change(self, since, timeout):
        deadline = time.monotonic() + timeout
        while self.version <= since:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(asyncio.shield(self.changed), left)
            except asyncio.TimeoutError:
                break


class Record:
    """One connection's or request's record: its data, written to
    <state_dir>/<name>.json shortly after each change."""

    DIGITS = 4

    def __init__(self, registry, name):
        self.registry = registry
        self.t0 = time.monotonic()
        self.flush_handle = None
        self.path = os.path.join(registry.state_dir, name + ".json")
        self.data = {}

    def t(self):
        return round(time.monotonic() - self.t0, self.DIGITS)

    def touch(self):
        self.registry.bump()
        if self.flush_handle is None:
            loop = asyncio.get_running_loop()
            self.flush_handle = loop.call_later(0.02, self.flush)

    def flush(self):
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.data, f, indent=1)
        os.replace(tmp, self.path)
