-- wrk: the JSON line both scripts print at the end (loaded by them with
-- dofile): counts, duration, mean latency and latency percentiles. wrk 4
-- corrects its latencies for coordinated omission before calling done():
-- for each response slower than twice the mean interval between responses
-- of a connection, it adds the samples the requests not sent meanwhile
-- would have had. One stall therefore counts many times over in the mean
-- and the percentiles.
function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"bytes":%d,"errors":%d,"mean_us":%.1f,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, secs, summary.bytes,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout,
    latency.mean, latency:percentile(50), latency:percentile(99)))
end
