"""The defaults of every step, in one place: the CLI, the Python API, the pipeline, status and validation all
read them from here (the pseudobulk ones are the seed's contract)."""

# pseudobulk (the seed's: B = 100, min cells per group 10, min units for a bootstrap 5, seed 42, 50 k cells per block)
BATCH_SIZE = 50_000
N_BOOTSTRAP = 100
BOOTSTRAP_SEED = 42
MIN_CELLS = 10
MIN_SAMPLES = 5
CHECKPOINT_EVERY = 300.0

# activity (secactpy's: lambda 5e5, 1000 permutations, seed 0)
LAMBDA = 5e5
METHOD = "exact"
N_RAND = 1000
PERMUTATION_SEED = 0
CENTRE = "across"

# validation
VALIDATE_MIN_SAMPLES = 10
VALIDATE_MIN_CELL_TYPES = 3

# comparisons (cytoatlas compare): the test, and the fewest donors per group (per cell type)
COMPARE_TEST = "ols"
COMPARE_MIN_GROUP_SIZE = 3

# demo
DEMO_N_CELLS = 50_000

# comparison figures and their report section
COMPARE_FIGURE_TOP = 12  # forest plots: the signatures of this many strongest meta-analysis rows
REPORT_COMPARE_ROWS = 200  # rows of each contrast's tables in the report (the strongest; the files hold all)
REPORT_CELLS_ROWS = 10  # per level, the label x signature rows of highest mean per-cell z shown in the report

# the seeds' former names (each seeds something else: the bootstrap, the permutations), kept as aliases for code
# written against them; new code uses BOOTSTRAP_SEED and PERMUTATION_SEED
SEED = BOOTSTRAP_SEED
PERM_SEED = PERMUTATION_SEED
