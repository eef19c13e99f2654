// Micro-benchmarks of the runner's parsers (bench/parse.ts): `deno bench --allow-all bench/`.
// They run once per measured run, so they only need to be cheap next to the run itself.
import { parseCurlWriteOut, parseVmHwm, parseWrkOutput } from "./parse.ts";

/** wrk 4.1's report, as printed on this machine (tests/bench_test.ts parses it too). */
export const WRK_REPORT = `Running 5s test @ http://127.0.0.1:8080/small.html
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   635.91us    0.89ms  12.92ms   93.69%
    Req/Sec    28.15k     2.91k   34.52k    71.00%
  Latency Distribution
     50%  405.00us
     75%  611.00us
     90%    1.13ms
     99%    4.48ms
  280071 requests in 5.00s, 3.52GB read
  Socket errors: connect 0, read 3, write 1, timeout 7
Requests/sec:  56013.11
Transfer/sec:    720.19MB
`;

Deno.bench("parseWrkOutput()", { group: "parse", baseline: true }, () => {
  parseWrkOutput(WRK_REPORT);
});

Deno.bench("parseCurlWriteOut()", { group: "parse" }, () => {
  parseCurlWriteOut("200 104857600 0.101 1038194059 br\n");
});

Deno.bench("parseVmHwm()", { group: "parse" }, () => {
  parseVmHwm(
    "Name:\tdeno\nVmPeak:\t 999 kB\nVmHWM:\t   51234 kB\nVmRSS:\t 1 kB\n",
  );
});
