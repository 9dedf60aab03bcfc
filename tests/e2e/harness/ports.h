#pragma once

namespace rbee::e2e {

// A port that was free a moment ago on 127.0.0.1 (bind port 0, read it, close).
int free_port();

}  // namespace rbee::e2e
