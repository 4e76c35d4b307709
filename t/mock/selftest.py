"""How a mock's self-test runs: the mock started with a script library
on a free port, the test module's cases run against it (its PORT and
STATE set first), the mock stopped, and the count printed last."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
import unittest


def run(label, mock, key, library, module):
    tmp = tempfile.mkdtemp(prefix="mock-test-")
    module.STATE = os.path.join(tmp, "state")
    lib = os.path.join(tmp, "lib.json")
    with open(lib, "w") as f:
        json.dump(library, f)
    proc = subprocess.Popen([sys.executable, mock, "--port", "0",
                             "--state-dir", module.STATE, "--key", key,
                             "--script", lib], stdout=subprocess.PIPE)
    passed = failed = 0
    try:
        line = proc.stdout.readline().decode().split()
        if len(line) != 2 or line[0] != "READY":
            raise RuntimeError("the mock did not start")
        module.PORT = int(line[1])
        suite = unittest.defaultTestLoader.loadTestsFromModule(module)
        result = unittest.TextTestRunner(stream=sys.stdout,
                                         verbosity=2).run(suite)
        failed = len(result.failures) + len(result.errors)
        passed = result.testsRun - failed
    except Exception:
        traceback.print_exc()
        failed += 1
    finally:
        proc.terminate()
        try:
            rc = proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        if rc != 0:
            print("FAIL: the mock exited with %s" % rc)
            failed += 1
        shutil.rmtree(tmp, ignore_errors=True)
    print("%s: %d passed, %d failed" % (label, passed, failed))
    return 1 if failed else 0
