# tools/bench/plot/latency.gp: append -> durable latency percentiles per
# backend (one writer, public API).
# gnuplot -e "dat='latency.dat'; out='latency.png'" latency.gp
# dat columns: backend, p50, p99, p99.9 (microseconds).
set terminal pngcairo size 800,500 font ",10"
set output out
set termoption noenhanced
set title "Append latency per backend, 1 writer, wal_append_wait()"
set ylabel "microseconds (log scale)"
set logscale y 10
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set grid ytics
set key top left
plot dat using 2:xtic(1) title "p50", '' using 3 title "p99", '' using 4 title "p99.9"
