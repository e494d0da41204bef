//! Every path callmux serves, one constant each, in a file of its own so the router, the
//! scope table and the envelopes all name them without importing each other.

pub const END_ROUTE: &str = "/api/calls/{call_id}/end";
pub const STOP_ROUTE: &str = "/v1/calls/{call_id}/stop";
pub const STOP_ALL_ROUTE: &str = "/v1/calls/active/stop";
pub const PLACE_ROUTE: &str = "/api/call";
pub const CAPACITY_ROUTE: &str = "/capacity";
pub const PAGE_ROUTE: &str = "/";
pub const SCRIPT_ROUTE: &str = "/dashboard/app.js";
pub const STYLE_ROUTE: &str = "/dashboard/style.css";
pub const ICON_ROUTE: &str = "/dashboard/icon.svg";
pub const HOOK_ROUTE: &str = "/hooks/{kind}/{provider_id}";
pub const ME_ROUTE: &str = "/me";
pub const ME_LINK_ROUTE: &str = "/me/link";
pub const SIGN_IN_ROUTE: &str = "/sign-in";
pub const BLAND_ROUTE: &str = "/v1/calls/active";
pub const CALLS_ROUTE: &str = "/api/calls";
pub const OWN_ROUTE: &str = "/calls";
pub const BLAND_STREAM_ROUTE: &str = "/v1/calls/active/stream";
pub const CALLS_STREAM_ROUTE: &str = "/api/calls/stream";
pub const OWN_STREAM_ROUTE: &str = "/calls/stream";
pub const WEBHOOKS_ROUTE: &str = "/webhooks";
