//! BSD `TAILQ` operations, once for every element type: the message
//! queues of ports (`queue`) and the lists of threads (`tdqueue`) are thin
//! typed faces of these.
//!
//! [`Head`] and [`Entry`] are laid out as `<sys/queue.h>`'s `TAILQ_HEAD`
//! and `TAILQ_ENTRY` (two pointers each, in that order), so that C code
//! using the `TAILQ_*` macros on the same lists sees them consistent. The
//! `src/abi` structures (`lwkt_msg_queue`, `thread_entry`, ...) are not
//! generic, because cbindgen and the ABI test read them: a head type
//! implements [`CHead`] (checked at compile time with [`same_layout`]),
//! and a link is given as a function from an element to its link field
//! cast to [`Entry`].

use core::ptr;

/// `TAILQ_HEAD(, T)`: the first element, and the address of the last
/// element's next-pointer (of `first` itself when the list is empty).
#[repr(C)]
pub struct Head<T> {
    pub first: *mut T,
    pub last: *mut *mut T,
}

/// `TAILQ_ENTRY(T)`: the next element, and the address of the pointer
/// that points to this element (the previous element's `next` or the
/// head's `first`).
#[repr(C)]
pub struct Entry<T> {
    pub next: *mut T,
    pub prev: *mut *mut T,
}

/// True when a C structure of `size` bytes with its second pointer at
/// `second` has the layout of [`Head`] / [`Entry`] (which agree with each
/// other). For `const` assertions in the typed faces.
pub const fn same_layout(size: usize, second: usize) -> bool {
    size == core::mem::size_of::<Head<u8>>()
        && second == core::mem::offset_of!(Head<u8>, last)
        && size == core::mem::size_of::<Entry<u8>>()
        && second == core::mem::offset_of!(Entry<u8>, prev)
}

/// A `TAILQ_HEAD` structure of `src/abi` whose elements are `Elem`.
///
/// # Safety
/// The implementing type must have the layout of [`Head<Self::Elem>`]
/// (assert it with [`same_layout`]).
pub unsafe trait CHead {
    type Elem;
}

/// The generic view of a C head.
#[inline(always)]
fn view<H: CHead>(head: *const H) -> *mut Head<H::Elem> {
    head.cast_mut().cast()
}

/// `TAILQ_INIT(head)`.
///
/// # Safety
/// `head` must be valid for writes.
#[inline]
pub unsafe fn init<H: CHead>(head: *mut H) {
    let head = view(head);
    // SAFETY: the caller guarantees `head` is writable; per `CHead` it
    // has the layout of `Head`.
    unsafe {
        (*head).first = ptr::null_mut();
        (*head).last = &raw mut (*head).first;
    }
}

/// `TAILQ_FIRST(head)`.
///
/// # Safety
/// `head` must be an initialised list.
#[inline]
pub unsafe fn first<H: CHead>(head: *const H) -> *mut H::Elem {
    // SAFETY: per the contract and `CHead`.
    unsafe { (*view(head)).first }
}

/// `TAILQ_INSERT_TAIL(head, elm, field)`; `entry(elm)` is the address of
/// `elm`'s link field.
///
/// # Safety
/// `head` must be an initialised list and `elm` a valid element that is
/// on no list through the link `entry` selects; `entry` must return the
/// address of that link inside the element it is given.
#[inline]
pub unsafe fn insert_tail<H: CHead>(
    head: *mut H,
    elm: *mut H::Elem,
    entry: impl Fn(*mut H::Elem) -> *mut Entry<H::Elem>,
) {
    // SAFETY: per the contract; `last` of an initialised list points at
    // the last next-pointer, which has no successor.
    unsafe {
        let last = (*view(head)).last;
        link_at(view(head), elm, last, ptr::null_mut(), entry);
    }
}

/// `TAILQ_INSERT_HEAD(head, elm, field)`; `entry` as for
/// [`insert_tail`].
///
/// # Safety
/// As [`insert_tail`].
#[inline]
pub unsafe fn insert_head<H: CHead>(
    head: *mut H,
    elm: *mut H::Elem,
    entry: impl Fn(*mut H::Elem) -> *mut Entry<H::Elem>,
) {
    let head = view(head);
    // SAFETY: per the contract; the head's first pointer is followed by
    // the old first element (or by nothing).
    unsafe { link_at(head, elm, &raw mut (*head).first, (*head).first, entry) }
}

/// Link `elm` into `head` where the pointer `at` (the head's `first` or
/// an element's `next`) points, in front of `next`, what `at` holds.
///
/// # Safety
/// `at` is that pointer of `head` and `next` its value; `elm` and `entry`
/// as for [`insert_tail`].
#[inline(always)]
unsafe fn link_at<T>(
    head: *mut Head<T>,
    elm: *mut T,
    at: *mut *mut T,
    next: *mut T,
    entry: impl Fn(*mut T) -> *mut Entry<T>,
) {
    // SAFETY: per the contract.
    unsafe {
        let e = entry(elm);
        (*e).next = next;
        (*e).prev = at;
        *at = elm;
        if next.is_null() {
            (*head).last = &raw mut (*e).next;
        } else {
            (*entry(next)).prev = &raw mut (*e).next;
        }
    }
}

/// `TAILQ_LAST(head, headname)`: the last element, NULL when the list is
/// empty. `entry` as for [`insert_tail`].
///
/// # Safety
/// `head` must be an initialised list whose elements are linked through
/// the link `entry` selects.
#[inline]
pub unsafe fn last<H: CHead>(
    head: *const H,
    entry: impl Fn(*mut H::Elem) -> *mut Entry<H::Elem>,
) -> *mut H::Elem {
    let head = view(head);
    // SAFETY: per the contract; `last` points at the head's `first` (an
    // empty list) or at the last element's `next`, whose entry's `prev`
    // points at the pointer to that element.
    unsafe {
        if (*head).first.is_null() {
            return ptr::null_mut();
        }
        let next_of_last = (*head).last;
        // The entry whose `next` field `last` points at.
        let e = next_of_last
            .cast::<u8>()
            .sub(core::mem::offset_of!(Entry<H::Elem>, next))
            .cast::<Entry<H::Elem>>();
        let elm = *(*e).prev;
        debug_assert!(&raw mut (*entry(elm)).next == next_of_last);
        elm
    }
}

/// `TAILQ_REMOVE(head, elm, field)`; `entry` as for [`insert_tail`]. The
/// element's link is cleared.
///
/// # Safety
/// `elm` must currently be on `head` through the link `entry` selects,
/// and `entry` must return the address of that link.
#[inline]
pub unsafe fn remove<H: CHead>(
    head: *mut H,
    elm: *mut H::Elem,
    entry: impl Fn(*mut H::Elem) -> *mut Entry<H::Elem>,
) {
    let head = view(head);
    // SAFETY: `elm` is linked on `head`, so its prev pointer and its
    // successor (or the head's last pointer) are valid.
    unsafe {
        let e = entry(elm);
        let next = (*e).next;
        if next.is_null() {
            (*head).last = (*e).prev;
        } else {
            (*entry(next)).prev = (*e).prev;
        }
        *(*e).prev = next;
        (*e).next = ptr::null_mut();
        (*e).prev = ptr::null_mut();
    }
}

// SAFETY: it is the layout.
unsafe impl<T> CHead for Head<T> {
    type Elem = T;
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Node {
        val: i32,
        a: Entry<Node>,
        b: Entry<Node>,
    }

    fn node(val: i32) -> Node {
        let e = || Entry {
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
        };
        Node {
            val,
            a: e(),
            b: e(),
        }
    }

    fn link_a(n: *mut Node) -> *mut Entry<Node> {
        // SAFETY: only a field address is computed.
        unsafe { &raw mut (*n).a }
    }

    fn link_b(n: *mut Node) -> *mut Entry<Node> {
        // SAFETY: only a field address is computed.
        unsafe { &raw mut (*n).b }
    }

    /// The values along the list, checking every back pointer and `last`.
    fn walk(head: *mut Head<Node>, entry: fn(*mut Node) -> *mut Entry<Node>) -> Vec<i32> {
        let mut out = Vec::new();
        // SAFETY: the nodes and the head outlive the walk.
        unsafe {
            let mut prev_next: *mut *mut Node = &raw mut (*head).first;
            let mut n = (*head).first;
            while !n.is_null() {
                assert_eq!((*entry(n)).prev, prev_next, "back pointer of {}", (*n).val);
                out.push((*n).val);
                prev_next = &raw mut (*entry(n)).next;
                n = (*entry(n)).next;
            }
            assert_eq!((*head).last, prev_next, "tail pointer");
        }
        out
    }

    #[test]
    fn insert_and_remove_keep_order_and_links() {
        let mut nodes: Vec<Node> = (1..=4).map(node).collect();
        let p: Vec<*mut Node> = nodes.iter_mut().map(|n| n as *mut Node).collect();
        let mut ha = Head {
            first: ptr::null_mut(),
            last: ptr::null_mut(),
        };
        let mut hb = Head {
            first: ptr::null_mut(),
            last: ptr::null_mut(),
        };
        let (ha, hb) = (&raw mut ha, &raw mut hb);
        // SAFETY: local nodes and heads, each node on each list once.
        unsafe {
            init(ha);
            init(hb);
            assert!(walk(ha, link_a).is_empty());
            for &n in &p {
                insert_tail(ha, n, link_a);
            }
            for &n in p.iter().rev() {
                insert_tail(hb, n, link_b);
            }
            assert_eq!(walk(ha, link_a), [1, 2, 3, 4]);
            assert_eq!(walk(hb, link_b), [4, 3, 2, 1]);
            // Middle, tail, head: every case of remove.
            remove(ha, p[1], link_a);
            assert_eq!(walk(ha, link_a), [1, 3, 4]);
            remove(ha, p[3], link_a);
            assert_eq!(walk(ha, link_a), [1, 3]);
            remove(ha, p[0], link_a);
            assert_eq!(walk(ha, link_a), [3]);
            assert!((*p[0]).a.next.is_null() && (*p[0]).a.prev.is_null());
            // A removed tail is appended after the new tail.
            insert_tail(ha, p[3], link_a);
            assert_eq!(walk(ha, link_a), [3, 4]);
            remove(ha, p[2], link_a);
            remove(ha, p[3], link_a);
            assert!(walk(ha, link_a).is_empty());
            assert!(last(ha, link_a).is_null());
            // At the head: of an empty list, then before a first element.
            insert_head(ha, p[1], link_a);
            insert_head(ha, p[0], link_a);
            insert_tail(ha, p[2], link_a);
            assert_eq!(walk(ha, link_a), [1, 2, 3]);
            assert_eq!(last(ha, link_a), p[2]);
            remove(ha, p[2], link_a);
            assert_eq!(last(ha, link_a), p[1]);
            remove(ha, p[0], link_a);
            remove(ha, p[1], link_a);
            assert!(walk(ha, link_a).is_empty());
            // The other link was never touched.
            assert_eq!(walk(hb, link_b), [4, 3, 2, 1]);
        }
    }
}
