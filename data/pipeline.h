// Reading, parallel work and in-order delivery of corpus chunks: one thread reads the corpus
// (read_corpus), `workers` threads turn chunks into results, and the consumer takes the results
// in input order with next(). At most 2 * workers + 2 chunks are in flight, which bounds memory;
// the results, and so everything built from them, do not depend on the number of workers.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "data/corpus.h"

namespace cairn {

template <typename Result>
class OrderedPipeline {
 public:
  // work(chunk, result) runs on a worker thread; an exception it throws is rethrown by next()
  // when that chunk's turn comes.
  using Work = std::function<void(CorpusChunk&, Result&)>;

  OrderedPipeline(const std::vector<InputFile>& files, const CorpusOptions& opts, int workers, Work work)
      : work_(std::move(work)), max_in_flight_(uint64_t(2 * workers + 2)) {
    reader_ = std::thread([this, &files, &opts] {
      try {
        read_corpus(files, opts, [this](CorpusChunk&& c) { push(std::move(c)); });
      } catch (const Stopped&) {
      } catch (...) {
        std::lock_guard<std::mutex> lock(m_);
        reader_error_ = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(m_);
      reader_done_ = true;
      cv_.notify_all();
    });
    for (int w = 0; w < workers; ++w) workers_.emplace_back([this] { work_loop(); });
  }

  ~OrderedPipeline() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stopping_ = true;
    }
    cv_.notify_all();
    reader_.join();
    for (auto& t : workers_) t.join();
  }
  OrderedPipeline(const OrderedPipeline&) = delete;
  OrderedPipeline& operator=(const OrderedPipeline&) = delete;

  // The next chunk's result in input order; false after the last. Rethrows a worker's exception
  // for its chunk, and the reader's once every chunk before it was delivered.
  bool next(Result& out) {
    std::unique_lock<std::mutex> lock(m_);
    cv_.wait(lock, [&] { return done_.count(next_) || (reader_done_ && next_ == produced_); });
    auto it = done_.find(next_);
    if (it == done_.end()) {
      if (reader_error_) std::rethrow_exception(reader_error_);
      return false;
    }
    Slot slot = std::move(it->second);
    done_.erase(it);
    ++next_;
    cv_.notify_all();  // room for the reader
    lock.unlock();
    if (slot.error) std::rethrow_exception(slot.error);
    out = std::move(slot.result);
    return true;
  }

 private:
  struct Stopped {};
  struct Slot {
    Result result;
    std::exception_ptr error;
  };

  void push(CorpusChunk&& c) {
    std::unique_lock<std::mutex> lock(m_);
    cv_.wait(lock, [&] { return stopping_ || produced_ - next_ < max_in_flight_; });
    if (stopping_) throw Stopped();
    todo_.push_back(std::move(c));
    ++produced_;
    cv_.notify_all();
  }

  void work_loop() {
    for (;;) {
      CorpusChunk chunk;
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return stopping_ || !todo_.empty() || reader_done_; });
        if (stopping_ || todo_.empty()) return;
        chunk = std::move(todo_.front());
        todo_.pop_front();
      }
      Slot slot;
      try {
        work_(chunk, slot.result);
      } catch (...) {
        slot.error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(m_);
      done_.emplace(chunk.seq, std::move(slot));
      cv_.notify_all();
    }
  }

  Work work_;
  const uint64_t max_in_flight_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<CorpusChunk> todo_;
  std::map<uint64_t, Slot> done_;
  uint64_t produced_ = 0, next_ = 0;
  bool reader_done_ = false, stopping_ = false;
  std::exception_ptr reader_error_;
  std::thread reader_;
  std::vector<std::thread> workers_;
};

}  // namespace cairn
