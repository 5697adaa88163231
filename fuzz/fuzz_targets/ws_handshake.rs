//! Fuzzes the handshake parsers: the client's check of a server response
//! and the server role's check of a client request. Nothing may panic; a
//! prefix of a complete response is either incomplete or fails the same
//! way, never accepted differently.
#![no_main]

use embermq_ws::handshake::{accept_for_key, check_response};
use embermq_ws::server::check_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let accept = accept_for_key(b"dGhlIHNhbXBsZSBub25jZQ==");
    let offered = ["mqtt", "chat"];
    let full = check_response(data, &accept, &offered, data.first() == Some(&b'H'), &mut ());
    if let Ok(Some(acc)) = full {
        assert!(acc.header_len <= data.len());
        // Every strict prefix of the header is incomplete.
        for cut in [0, acc.header_len / 2, acc.header_len.saturating_sub(1)] {
            let r = check_response(&data[..cut], &accept, &offered, false, &mut ());
            assert!(matches!(r, Ok(None) | Err(_)));
            if let Ok(Some(_)) = r {
                panic!("prefix accepted");
            }
        }
        if let Some(p) = acc.protocol {
            assert!(offered.contains(&p));
        }
    }
    if let Ok(Some(req)) = check_request(data, &offered) {
        assert!(req.header_len <= data.len());
    }
});
