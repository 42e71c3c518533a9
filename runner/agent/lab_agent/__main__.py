# `python3 -m lab_agent`, with runner/agent on sys.path.
from .main import main

main()
