"""ReconFlow's GPU container: the reconstruction engine and the stage runner around it."""

import os

# OpenMP threads (torch on the CPU) that wait by spinning burn their core while a busy machine has
# descheduled a sibling, and every parallel region then waits on it: on 2 shared cores the draft
# reconstruct stage took 80-90 s (65-70 CPU s) instead of 15 s (10 CPU s). Passive waiting costs
# nothing measurable on a quiet machine. Read once, when torch loads OpenMP: set before it is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
