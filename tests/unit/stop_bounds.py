"""How the unit tests tell a stop that came mid-run from one that came late or never.

A stop is asserted to come well inside the time the work would take unstopped, not within the
one-second goal: CI shares two cores with the rest of the suite, so a timed assertion there would
fail on a busy machine, not on a slow stop. How fast a stop is, at every point of every stage, is
measured on an idle machine by ``bench/cancel_stop.py`` (its output is committed beside it).
"""

UNSTOPPED_WORK_S = 30.0  # stand-in work that nothing but a stop ends runs this long
STOPPED_MID_RUN_S = 10.0  # a stop that takes longer than this has not worked
