//! The two owned values every message carries, kept cheap to make, move
//! and drop on the per-message path (issue 14's CPU budget):
//!
//! - [`Topic`], a topic name behind an `Arc<str>`: cloning it copies no
//!   text, so a publisher that keeps its `Topic` allocates nothing per
//!   publish, and the driver hands every message received on the same
//!   topic as the one before it the same allocation;
//! - [`PropertiesBox`], the 5.0 [`MessageProperties`] held out of line and
//!   only when some property is set: an empty one is a null pointer (no
//!   allocation, 8 bytes to move), and it reads as a `MessageProperties`
//!   through `Deref`.
//!
//! Neither validates: topics are checked where they are used (publish,
//! Will), as before.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::borrow::Borrow;
use core::fmt;
use core::ops::{Deref, DerefMut};

use super::MessageProperties;

/// A topic name, owned and shared: `Clone` copies a pointer, not the text.
/// Reads as a `str` (`Deref`, `as_str`, `Display`) and compares with
/// `str`, `&str` and `String`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Topic(Arc<str>);

impl Topic {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Topic {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Topic {
    fn from(s: &str) -> Self {
        Self(Arc::from(s))
    }
}

impl From<String> for Topic {
    fn from(s: String) -> Self {
        Self(Arc::from(s))
    }
}

impl From<&String> for Topic {
    fn from(s: &String) -> Self {
        Self(Arc::from(s.as_str()))
    }
}

impl From<&Topic> for Topic {
    fn from(t: &Topic) -> Self {
        t.clone()
    }
}

impl From<Arc<str>> for Topic {
    fn from(s: Arc<str>) -> Self {
        Self(s)
    }
}

impl From<Topic> for String {
    fn from(t: Topic) -> Self {
        String::from(&*t.0)
    }
}

impl PartialEq<str> for Topic {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Topic {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for Topic {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Topic> for str {
    fn eq(&self, other: &Topic) -> bool {
        *self == *other.0
    }
}

impl PartialEq<Topic> for &str {
    fn eq(&self, other: &Topic) -> bool {
        **self == *other.0
    }
}

impl PartialEq<Topic> for String {
    fn eq(&self, other: &Topic) -> bool {
        **self == *other.0
    }
}

/// No property set: what an empty [`PropertiesBox`] reads as.
static NONE: MessageProperties = MessageProperties {
    payload_is_utf8: None,
    message_expiry_secs: None,
    content_type: None,
    response_topic: None,
    correlation_data: None,
    user_properties: Vec::new(),
    subscription_ids: Vec::new(),
};

/// The 5.0 properties of a [`Message`](super::Message) or
/// [`Publish`](super::Publish), boxed only when one is set. Read them as a
/// [`MessageProperties`] (`msg.properties.response_topic`); writing
/// through it (`msg.properties.content_type = ..`) boxes them first.
#[derive(Clone, Default)]
pub struct PropertiesBox(Option<Box<MessageProperties>>);

impl PropertiesBox {
    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(MessageProperties::is_empty)
    }

    /// The properties, by value.
    pub fn into_inner(self) -> MessageProperties {
        self.0.map(|b| *b).unwrap_or_default()
    }
}

impl From<MessageProperties> for PropertiesBox {
    fn from(p: MessageProperties) -> Self {
        Self((!p.is_empty()).then(|| Box::new(p)))
    }
}

impl Deref for PropertiesBox {
    type Target = MessageProperties;

    fn deref(&self) -> &MessageProperties {
        self.0.as_deref().unwrap_or(&NONE)
    }
}

impl DerefMut for PropertiesBox {
    fn deref_mut(&mut self) -> &mut MessageProperties {
        self.0.get_or_insert_with(Box::default)
    }
}

impl PartialEq for PropertiesBox {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for PropertiesBox {}

impl PartialEq<MessageProperties> for PropertiesBox {
    fn eq(&self, other: &MessageProperties) -> bool {
        **self == *other
    }
}

impl fmt::Debug for PropertiesBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_properties_take_no_allocation_and_read_as_none() {
        let p = PropertiesBox::from(MessageProperties::default());
        assert!(p.0.is_none());
        assert!(p.is_empty());
        assert_eq!(p.response_topic, None);
        assert_eq!(core::mem::size_of::<PropertiesBox>(), 8);
    }

    #[test]
    fn writing_a_property_boxes_it_and_reads_back() {
        let mut p = PropertiesBox::from(MessageProperties::default());
        p.content_type = Some("text/plain".into());
        assert!(!p.is_empty());
        assert_eq!(p.content_type.as_deref(), Some("text/plain"));
        assert_eq!(p.into_inner().content_type.as_deref(), Some("text/plain"));
    }

    #[test]
    fn a_cloned_topic_shares_its_text_and_compares_with_strings() {
        let t = Topic::from("a/b");
        let u = t.clone();
        assert!(core::ptr::eq(t.as_str(), u.as_str()));
        assert_eq!(t, "a/b");
        assert_eq!(t, String::from("a/b"));
        assert_eq!(alloc::format!("{t}"), "a/b");
    }
}
