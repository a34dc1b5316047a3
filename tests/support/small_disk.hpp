// A small filesystem for a test to fill: a tmpfs mounted for the life of the object.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace botgate::test {

// A tmpfs of `size` mounted at `dir` for the life of the object (the test runs as root, as CI
// does); mounted() is false where mounting is not allowed.
class SmallDisk {
 public:
  SmallDisk(const std::filesystem::path& dir, const std::string& size) : dir_(dir) {
    std::filesystem::create_directories(dir_);
    mounted_ = std::system(("mount -t tmpfs -o size=" + size + " botgate-test " + dir_.string() +
                            " 2>/dev/null")
                               .c_str()) == 0;
  }
  ~SmallDisk() {
    if (mounted_) (void)std::system(("umount -l " + dir_.string()).c_str());
  }
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;
  bool mounted() const { return mounted_; }

 private:
  std::filesystem::path dir_;
  bool mounted_ = false;
};

}  // namespace botgate::test
