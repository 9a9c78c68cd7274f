//! `Digest::parse` takes untrusted text (manifests, URLs, file names), so for any input it
//! must either reject it or accept exactly its canonical form: the digest prints back as
//! the input and parses again to the same value.

#![no_main]

use cache_core::Digest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(digest) = Digest::parse(input) {
        let printed = digest.to_string();
        assert_eq!(printed, input, "a parsed digest must print as its input");
        let reparsed = Digest::parse(&printed).expect("a printed digest must parse again");
        assert_eq!(reparsed, digest, "re-parsing must give the same digest");
    }
});
