# docs/img/online_alignment.png from tools/experiments/online_methods.sh's alignment_*.dat:
# each online method's cosine with BPTT's gradient along BPTT's training, adding and copy.
# usage: gnuplot -e "out='build/online-exp'; img='docs/img'" tools/experiments/online_alignment.gp
if (!exists("out")) out = 'build/online-exp'
if (!exists("img")) img = 'docs/img'
set terminal pngcairo size 1000,420 enhanced font ',10'
set output img.'/online_alignment.png'
set multiplot layout 1,2
set grid
set key bottom left font ',8' noenhanced
set xlabel 'BPTT training step'
set ylabel 'cosine with the BPTT gradient (layer l0)'
set yrange [-0.1:1.05]
set style data linespoints
do for [task in "adding copy"] {
  set title task.' (LSTM H = 32, one fixed batch of 32)'
  plot for [i=2:7] out.'/alignment_'.task.'.dat' using 1:i title columnhead(i)
}
unset multiplot
