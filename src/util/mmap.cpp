#include "util/mmap.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "util/error.h"

namespace coppice {

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("file", path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("file", path + ": not a regular file");
  }
  std::shared_ptr<MappedFile> mf(new MappedFile());
  mf->path_ = path;
  mf->size_ = static_cast<size_t>(st.st_size);
  if (mf->size_ > 0) {
    void* p = mmap(nullptr, mf->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail("file", path + ": mmap failed: " + std::strerror(e));
    }
    mf->data_ = static_cast<const uint8_t*>(p);
    mf->owned_ = true;
  }
  ::close(fd);
  return mf;
}

std::shared_ptr<MappedFile> MappedFile::borrow(const uint8_t* data, size_t size, std::string name) {
  std::shared_ptr<MappedFile> mf(new MappedFile());
  mf->data_ = data;
  mf->size_ = size;
  mf->path_ = std::move(name);
  return mf;
}

MappedFile::~MappedFile() {
  if (owned_ && data_) munmap(const_cast<uint8_t*>(data_), size_);
}

void MappedFile::release(const void* p, size_t n) const {
  if (!owned_ || n == 0) return;
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto b = reinterpret_cast<uintptr_t>(p), e = b + n;
  const uintptr_t b0 = (b + page - 1) / page * page, e0 = e / page * page;
  if (b0 < e0) madvise(reinterpret_cast<void*>(b0), e0 - b0, MADV_DONTNEED);
}

}  // namespace coppice
