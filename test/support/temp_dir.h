// A fresh directory for one test: made unique under $TMPDIR (mkdtemp), removed with everything in it
// when the object goes, also when the test fails half-way. Header-only, for every test target.
#pragma once

#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>

namespace cogs::testing {

class TempDir {
public:
    explicit TempDir(std::string_view prefix = "cogs-test") {
        std::string tmpl =
            (std::filesystem::temp_directory_path() / (std::string(prefix) + "-XXXXXX")).string();
        if (::mkdtemp(tmpl.data()) == nullptr) {
            std::perror("mkdtemp");
            std::abort();  // no test can go on without its directory
        }
        path_ = std::move(tmpl);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return path_; }
    // path() + "/" + name.
    std::string operator/(std::string_view name) const { return path_ + "/" + std::string(name); }
    // Writes `text` to the file `name` in the directory; its path.
    std::string Write(std::string_view name, std::string_view text) const {
        const std::string file = *this / name;
        std::ofstream(file) << text;
        return file;
    }

private:
    std::string path_;
};

}  // namespace cogs::testing
