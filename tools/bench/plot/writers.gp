# tools/bench/plot/writers.gp: durable appends per second against writer
# count, local backend vs REF-GC (and REF-SYNC at one writer).
# gnuplot -e "dat='writers.dat'; out='writers.png'" writers.gp
# dat columns: writers, local, REF-GC, REF-SYNC (NaN except at 1 writer).
set terminal pngcairo size 800,500 font ",10"
set output out
set termoption noenhanced
set title "Durable 100-B appends per second (medians of the A/B pairs)"
set xlabel "writer threads"
set ylabel "durable appends/s"
set logscale x 2
set logscale y 10
set xtics ("1" 1, "4" 4, "16" 16, "64" 64)
set xrange [0.8:80]
set grid ytics mytics xtics
set key top left
set datafile missing "nan"
plot dat using 1:2 with linespoints lw 2 pt 7 title "local backend (bench-local)", \
     dat using 1:3 with linespoints lw 2 pt 5 title "REF-GC (mutex+condvar group commit)", \
     dat using 1:4 with points pt 9 ps 2 title "REF-SYNC (pwrite+fdatasync, 1 writer)"
