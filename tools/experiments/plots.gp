# The pictures of docs/experiments.md, from the runs' metrics CSVs and `bptt diagnose --out` .dat files.
# usage (from the repository root):
#   gnuplot -e "runs='build-exp/runs'" tools/experiments/plots.gp
# writes docs/img/adding_t100.png, adding_t200.png, diag_jacobian.png, diag_grad_norm.png,
# truncation_bias.png
if (!exists("runs")) runs = 'build-exp/runs'
if (!exists("img")) img = 'docs/img'
set terminal pngcairo size 800,500 enhanced font ',10'
set datafile separator ','
set datafile missing ''
set grid
baseline = 2.0/12.0

do for [T in "100 200"] {
  set output img.'/adding_t'.T.'.png'
  set title 'Adding problem, T = '.T.': test MSE (1000 held-out sequences) against training steps' noenhanced
  set xlabel 'optimizer step (batch 50)'
  set ylabel 'test MSE' noenhanced
  set logscale y
  set format y '10^{%L}'
  set yrange [3e-5:1]
  set key at graph 0.98, graph 0.8 box opaque
  plot runs.'/adding_lstm_t'.T.'.csv' every ::1 using 1:4 with linespoints pt 7 ps 0.6 lw 2 lc rgb '#1f77b4' title 'LSTM', \
       runs.'/adding_gru_t'.T.'.csv' every ::1 using 1:4 with linespoints pt 5 ps 0.6 lw 2 lc rgb '#2ca02c' title 'GRU', \
       runs.'/adding_elman_t'.T.'.csv' every ::1 using 1:4 with linespoints pt 9 ps 0.6 lw 2 lc rgb '#d62728' title 'Elman (tanh)', \
       baseline with lines dt 2 lw 1.5 lc rgb 'black' title 'baseline 1/6 (always predict 1)', \
       0.01 with lines dt 3 lw 1 lc rgb 'gray40' title 'MSE 0.01'
  unset logscale y
  set format y '%g'
  set yrange [*:*]
}

# diagnose: .dat files are whitespace separated
set datafile separator whitespace
set datafile missing 'NaN'
de = runs.'/diag_elman_t100/'
dl = runs.'/diag_lstm_t100/'

set output img.'/diag_jacobian.png'
set title '||dh_T/dh_t||_F against the distance T - t, trained models, T = 100, B = 32' noenhanced
set xlabel 'distance T - t'
set ylabel '||dh_T/dh_t||_F' noenhanced
set logscale y
set format y '10^{%L}'
set yrange [1e-22:1e4]
set xrange [0:100]
set key top right box opaque
if (!exists("sigma_elman")) sigma_elman = 1.0
plot de.'jacobian_norm_by_distance.dat' using 1:3 with linespoints pt 9 ps 0.5 lw 2 lc rgb '#d62728' title 'Elman (tanh)', \
     dl.'jacobian_norm_by_distance.dat' using 1:3 with linespoints pt 7 ps 0.5 lw 2 lc rgb '#1f77b4' title 'LSTM (h path, c held fixed)', \
     sqrt(128)*sigma_elman**x with lines dt 2 lw 1.5 lc rgb '#d62728' title sprintf('Pascanu bound for Elman: sqrt(H) sigma_max^d, sigma_max = %.2f', sigma_elman) noenhanced
set xrange [*:*]
set yrange [*:*]

set output img.'/diag_grad_norm.png'
set title 'gradient reaching each step ||dL/dh_t|| (loss at t = 100 only), T = 100, B = 32' noenhanced
set xlabel 'step t (0: h_0)'
set ylabel '||dL/dh_t||_2 over the batch' noenhanced
set key at graph 0.98, graph 0.3 box opaque
plot de.'grad_norm_by_step.dat' using 1:2 with linespoints pt 9 ps 0.5 lw 2 lc rgb '#d62728' title 'Elman (tanh)', \
     dl.'grad_norm_by_step.dat' using 1:2 with linespoints pt 7 ps 0.5 lw 2 lc rgb '#1f77b4' title 'LSTM'

set output img.'/truncation_bias.png'
set title 'truncated BPTT (window K) against the full gradient, trained models, T = 100, B = 32' noenhanced
unset logscale y
set format y '%g'
set logscale x 2
set xrange [0.8:128]
set xlabel 'window K'
set ylabel 'cosine(g_K, g)' noenhanced
set y2label '||g_K - g|| / ||g||' noenhanced
set ytics nomirror
set y2tics
set yrange [-0.1:1.05]
set y2range [-0.1:1.05]
set key at graph 0.5, graph 0.8 box opaque
plot dl.'truncation_bias.dat' using 1:2 axes x1y1 with linespoints pt 7 lw 2 lc rgb '#1f77b4' title 'LSTM: cosine', \
     dl.'truncation_bias.dat' using 1:3 axes x1y2 with linespoints pt 7 dt 2 lw 2 lc rgb '#1f77b4' title 'LSTM: relative error', \
     de.'truncation_bias.dat' using 1:2 axes x1y1 with linespoints pt 9 lw 2 lc rgb '#d62728' title 'Elman: cosine', \
     de.'truncation_bias.dat' using 1:3 axes x1y2 with linespoints pt 9 dt 2 lw 2 lc rgb '#d62728' title 'Elman: relative error'
set output
