// The store's metrics (docs/metrics.md, "cogsd: the store"), fed from SqliteOptions::on_commit:
//
//   cogs_store_commit_duration_seconds  histogram  one transaction, BEGIN → durable
//   cogs_store_commit_groups            histogram  write groups per transaction (the batch size)
//   cogs_store_commits_total            counter    transactions committed
//   cogs_store_fenced_total             counter    groups refused for a stale fencing token
//   cogs_store_no_space_total           counter    groups turned away for lack of disk space
//                                                  (refused, or held until space returns)
//   cogs_store_held_groups              gauge      groups held now, waiting for space
//
// and from SqliteOptions::on_writable (WritableMetrics):
//
//   cogs_store_writable                 gauge      1, or 0 while writes are refused (disk full)
//   cogs_store_disk_full_total          counter    episodes of a full disk
//
// with one log line (logger "store") when an episode starts (warn) and when it ends (info).
//
// Library cogs_store_metrics, apart so that cogs_store does not depend on the metrics library; the
// process that opens the store (cogsd, cogs-bench) wires the two:
//
//   store::SqliteOptions options;
//   options.on_commit = store::CommitMetrics(metrics);
//   options.on_writable = store::WritableMetrics(metrics);
//
// Cost: per transaction (not per group), two histogram observations and two counter increments on
// the writer thread, with handles looked up once here.
#pragma once

#include <functional>

#include "cogs/observe/metrics.h"
#include "cogs/store/store.h"

namespace cogs::store {

// An on_commit that records each transaction in `metrics`. Null `metrics`: an empty function (the
// store then calls nothing).
std::function<void(const CommitReport&)> CommitMetrics(observe::Metrics* metrics);

// An on_writable that sets cogs_store_writable, counts episodes and logs each start and end (null
// `metrics`: the log lines alone).
std::function<void(bool, const Error&)> WritableMetrics(observe::Metrics* metrics);

}  // namespace cogs::store
