// README, "Load one rank's shard of every weight": tensor-parallel rank `rank` of `world` reads its
// rows of every tensor, and only those bytes.
//   readme_shard CHECKPOINT WORLD   (CTest runs it on fixtures/t2/linear.pth with 2 ranks)
// The README shows the function load_shard() below verbatim; tests/readme_check.py keeps it so.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include <pthio/pthio.hpp>

std::vector<std::pair<std::string, pthio::tensor>> load_shard(const char* path, int rank,
                                                              int world) {
  pthio::load_options opts;
  opts.mode = pthio::load_mode::lazy;  // the pickle only: each slice then reads its own bytes
  opts.map_location = "cpu";           // or "cuda:" + std::to_string(rank)
  pthio::checkpoint ck = pthio::load_checkpoint(path, opts);

  std::vector<std::pair<std::string, pthio::tensor>> shard;
  pthio::visit_tensors(ck.root, [&](const std::string& key, const pthio::value& v) {
    const pthio::tensor& placeholder = v.as_tensor();  // dtype and shape, no bytes yet
    if (placeholder.dim() == 0) {
      shard.emplace_back(key, ck.load_tensor(key));
      return;
    }
    // Rows [first, last): blocks of ceil(n / world), as text-generation-inference splits them.
    auto [first, last] = pthio::shard_range(placeholder.size(0), rank, world);
    pthio::slice rows({pthio::slice_item::range(first, last)});  // t[first:last]
    shard.emplace_back(key, ck.load_slice(key, rows));           // reads those rows, one read
  });
  return shard;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: readme_shard CHECKPOINT WORLD\n");
    return 2;
  }
  try {
    const int world = std::atoi(argv[2]);
    // The check behind the "ok" line: the ranks' rows, one after another, are the whole tensor as
    // an eager load reads it.
    pthio::load_options o;
    o.map_location = "cpu";
    pthio::checkpoint whole = pthio::load_checkpoint(argv[1], o);
    std::vector<std::vector<std::byte>> joined;
    for (int rank = 0; rank < world; ++rank) {
      auto shard = load_shard(argv[1], rank, world);
      std::cout << "rank " << rank << ":";
      for (std::size_t i = 0; i < shard.size(); ++i) {
        const auto& [key, t] = shard[i];
        std::cout << " " << key << " " << pthio::shape_string(t.shape());
        if (joined.size() <= i) joined.emplace_back();
        auto b = t.bytes();
        joined[i].insert(joined[i].end(), b.begin(), b.end());
      }
      std::cout << "\n";
    }
    std::size_t i = 0;
    bool same = true;
    pthio::visit_tensors(whole.root, [&](const std::string&, const pthio::value& v) {
      same = same && i < joined.size() && joined[i++] == v.as_tensor().contiguous().bytes();
    });
    if (!same || i != joined.size()) {
      std::fprintf(stderr, "readme_shard: the shards do not make up the tensors\n");
      return 1;
    }
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "readme_shard: %s\n", e.what());
    return 1;
  }
  std::cout << "readme_shard: ok\n";
}
