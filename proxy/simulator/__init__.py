"""`pareto simulate`: a local OpenAI-compatible upstream of simulated models.

Two kinds of model, which one server can mix:

- personas (`personas`): answer a bundled customer-support dataset (`dataset`) with the correct
  reply or, for a stable share `flaw_rate` of the conversations, a flawed one, at a configured
  latency, for `pareto demo` and for tests;
- replayed models (`replay`): answer exactly the conversations recorded in JSON Lines files.

Modules: `catalog` (the models one server serves), `conversation` (the matching rule),
`latency` (delays), `tokens` (offline tiktoken counts), `completions` (request and response
shapes), `server` (the aiohttp app), `runner` (start and stop in-process). See
docs/simulator.md.
"""

from proxy.simulator.catalog import Catalog, build_catalog
from proxy.simulator.errors import SimulatorFileError
from proxy.simulator.runner import SimulatorServer, ThreadedSimulator

__all__ = ["Catalog", "SimulatorFileError", "SimulatorServer", "ThreadedSimulator", "build_catalog"]
