# The entry point of the agent artifact: `python3 agent-<hash>.pyz` (a zipapp
# whose root holds this file and the lab_agent package) or `python3 runner/agent`.
from lab_agent.main import main

main()
