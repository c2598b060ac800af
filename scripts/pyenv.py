"""The scripts' Python environment: `.venv` with tests/python/requirements.txt, as scripts/test
makes it. A script that needs kafka-python calls `ensure()` first: it re-runs the script under
`.venv/bin/python`, creating or updating the environment first when it is missing or its
requirements changed (the same stamp as scripts/test: `.venv/.requirements`)."""
import filecmp
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv")
REQUIREMENTS = os.path.join(ROOT, "tests", "python", "requirements.txt")
STAMP = os.path.join(VENV, ".requirements")


def _current():
    return (os.path.exists(os.path.join(VENV, "bin", "python")) and os.path.exists(STAMP)
            and filecmp.cmp(REQUIREMENTS, STAMP, shallow=False))


def ensure():
    """Returns if this interpreter is the environment's and it is current; else makes it current
    and re-executes the calling script under it (never returns then)."""
    inside = os.path.realpath(sys.prefix) == os.path.realpath(VENV)
    if inside and _current():
        return
    if not _current():
        print(f"[{os.path.basename(sys.argv[0])}] setting up {VENV} (tests/python/requirements.txt)", flush=True)
        subprocess.run([sys.executable if not inside else "python3", "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", "--disable-pip-version-check",
                        "-r", REQUIREMENTS], check=True)
        shutil.copyfile(REQUIREMENTS, STAMP)
    python = os.path.join(VENV, "bin", "python")
    os.execv(python, [python] + sys.argv)
