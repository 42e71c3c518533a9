# The entry point of the agent artifact: `python3 agent-<hash>.pyz` (a zipapp
# whose root holds this file and the lab_agent package) or `python3 runner/agent`.
# Plain enough for any Python to read, so an old one is told why, not a SyntaxError.
import os
import sys

if sys.version_info < (3, 7):
    sys.stderr.write("lab agent: Python %d.%d is too old, it needs 3.7 or newer\n" % sys.version_info[:2])
    sys.exit(3)


def unpacked(pyz):
    """A directory beside the zipapp holding what it holds, byte-compiled,
    made at its first start. Python imports modules from a zip without ever
    caching their bytecode, so every start compiled every module again. The
    directory is named by the same content hash as the zipapp and appears
    whole or not at all (unpacked and compiled aside, then renamed); None, and
    the agent runs from the zip, where it cannot be made."""
    if not pyz.endswith(".pyz") or not os.path.isfile(pyz):
        return None
    target = pyz[:-4] + ".d"
    if os.path.isdir(target):
        return target
    temp = "%s.%d.tmp" % (target, os.getpid())
    try:
        import zipfile

        with zipfile.ZipFile(pyz) as z:
            z.extractall(temp)
        import compileall

        # Here, not at each import: PYTHONDONTWRITEBYTECODE (the controller's, on a local host) would stop those.
        compileall.compile_dir(temp, quiet=2)
        os.rename(temp, target)
        return target
    except Exception:
        if os.path.isdir(target):  # another agent made it first
            return target
        return None
    finally:
        if os.path.isdir(temp):
            import shutil

            shutil.rmtree(temp, ignore_errors=True)


_tree = unpacked(sys.path[0])
if _tree is not None:
    sys.path[0] = _tree

from lab_agent.main import main  # noqa: E402

main()
