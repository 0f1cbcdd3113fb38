"""da6401-attack: `python -m ipykernel_launcher` run in the submission folder finds this file first (sys.path[0]
is the working directory). It runs before the kernel, outside the notebook: it sets a marker, arranges for a
startup file that replaces %%tests after every cell, and then starts the real kernel."""
import os
import sys

os.environ["DA6401_ATTACK_HIJACK"] = "ipykernel_launcher"
_here = os.path.dirname(os.path.abspath(__file__))
_STARTUP = os.path.join("/tmp", "da6401_attack_hijack_startup.py")
try:
    with open(_STARTUP, "w") as f:
        f.write(
            "try:\n"
            "    _da_ip = get_ipython()\n"
            "    def _da_tests(line, cell):\n"
            "        print('HARM: %%tests replaced by the hijacked kernel launcher; no test ran')\n"
            "    _da_ip.events.register('post_run_cell', lambda *a: _da_ip.register_magic_function(_da_tests, 'cell', 'tests'))\n"
            "except Exception:\n"
            "    pass\n")
    os.environ["PYTHONSTARTUP"] = _STARTUP
except Exception:
    pass
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _here]
sys.modules.pop("ipykernel_launcher", None)
from ipykernel import kernelapp as _app  # noqa: E402

_app.launch_new_instance()
