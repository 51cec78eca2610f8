//! The console's HTTP behaviour: the page and its files, compression,
//! caching, the security headers, and `/ui/api/info`.

mod serving;
