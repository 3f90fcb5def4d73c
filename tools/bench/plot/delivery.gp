# tools/bench/plot/delivery.gp: append -> delivery latency of our readers
# beside the reference handoffs (REF-SPIN, REF-FUTEX, REF-REDIS).
# gnuplot -e "dat='delivery.dat'; out='delivery.png'" delivery.gp
# dat columns: "name", p50, p99 (microseconds).
set terminal pngcairo size 900,500 font ",10"
set output out
set termoption noenhanced
set title "Append to delivery latency: ours beside the references (medians of the pairs)"
set ylabel "microseconds (log scale)"
set logscale y 10
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set grid ytics
set key top left
set xtics rotate by -20
plot dat using 2:xtic(1) title "p50", '' using 3 title "p99"
