"""The demo: the seed's mission played at its real dates, 2013 to 2016.

- ``player``: enrols a roster and plays a journal while the journeys' timers fire,
  years passing in seconds (time skipping, or a compressed clock);
- ``scenario``: the seed's files, played and printed with the bilan (``corridor demo``).
"""

from corridor.demo.player import ClockMode, DemoOutcome, play
from corridor.demo.scenario import EXAMPLES, Scenario, run_scenario

__all__ = ["EXAMPLES", "ClockMode", "DemoOutcome", "Scenario", "play", "run_scenario"]
