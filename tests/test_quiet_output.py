import subprocess
import sys
import textwrap

from xlnet.quiet_output import is_harmless

TF_START = ("WARNING: All log messages before absl::InitializeLog() is called are written to "
            "STDERR")
BEAM_WORKER = ("WARNING:root:apitools not found, and bigquery client libraries are not "
               "available despite the import not raising an ImportError.")


def test_only_the_known_harmless_lines_are_recognised():
    assert is_harmless(TF_START)
    assert is_harmless(BEAM_WORKER)
    assert is_harmless("I0000 00:00:1796165662.221015   19019 port.cc:153] oneDNN custom "
                       "operations are on. You may see slightly different numerical results")
    assert not is_harmless("E0000 00:00:17.1 1 gpu_device.cc:2] out of memory")
    assert not is_harmless("WARNING:root:apitools changed its mind")
    assert not is_harmless("Traceback (most recent call last):")
    assert not is_harmless(f"error: {TF_START}")


def test_lines_of_the_process_and_its_children_pass_in_order_without_the_harmless():
    child = f"import sys; sys.stderr.write({BEAM_WORKER!r} + '\\nchild line\\n')"
    script = textwrap.dedent(f"""
        import subprocess, sys
        from xlnet.quiet_output import harmless_stderr_lines_dropped
        with harmless_stderr_lines_dropped():
            print("before", file=sys.stderr, flush=True)
            print({TF_START!r}, file=sys.stderr, flush=True)
            subprocess.run([sys.executable, "-c", {child!r}], check=True)
            sys.stderr.write("progress 50%\\r")
            sys.stderr.write("unfinished")
        print("after", file=sys.stderr)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b"before\nchild line\nprogress 50%\runfinishedafter\n"
