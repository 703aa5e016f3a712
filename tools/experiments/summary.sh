#!/bin/sh
# The table of docs/experiments.md section 1 from the runs of adding_run.sh:
# cell, T, test MSE at the last evaluation (the metrics CSV's val_loss, = the "test MSE" line),
# the best test MSE seen at the --eval-every points, the first evaluated step below 0.01,
# steps, user CPU seconds and wall seconds (from /usr/bin/time -v in the .log).
RUNS=${RUNS:-build-exp/runs}
printf '%s\n%s\n' '| cell | T | final test MSE | best (step) | first eval < 0.01 | steps | CPU s | wall s |' '|---|---|---|---|---|---|---|---|'
for T in 100 200; do for cell in lstm gru elman; do
  f=$RUNS/adding_${cell}_t$T
  [ -f "$f.csv" ] || continue
  awk -F, -v cell="$cell" -v T="$T" -v logf="$f.log" '
    NR > 1 && $4 != "" { last = $4; step = $1; if (best == "" || $4 + 0 < best + 0) { best = $4; bstep = $1 }
                         if (below == "" && $4 + 0 < 0.01) below = $1 }
    END {
      while ((getline line < logf) > 0) {
        if (line ~ /User time/) { split(line, a, ": "); user = a[2] }
        if (line ~ /Elapsed/) { n = split(line, a, ": "); split(a[n], b, ":"); wall = b[1] * 60 + b[2] }
      }
      printf "| %s | %d | %.2g | %.2g (%d) | %s | %d | %.0f | %.0f |\n", cell, T, last, best, bstep,
             (below == "" ? "never" : below), step, user, wall
    }' "$f.csv"
done; done
