"""The texts the product sends, per event, in English and Simplified Chinese (the user's
locale). Placeholders are filled from a small dict the caller builds; nothing here reads
the database."""

from __future__ import annotations

EVENTS = ("offer", "accepted", "en_route", "arrived", "completed", "cancelled", "unfilled",
          "reassigning", "replacing", "released", "no_show", "worker_free", "password_reset",
          "signup_attempted", "tenant_intro", "card_declined", "hold_lapsed")
LOCALES = ("en", "zh-CN")

TEMPLATES: dict[str, dict[str, str]] = {
    "offer": {
        "en": "dispatch: new {category} job {distance_km} km away, arrive by {arrive_by}. "
              "Open the app within {window_s} s to accept.",
        "zh-CN": "dispatch：{distance_km} 公里外有新的{category}工作，需在 {arrive_by} 前到达。"
                 "请在 {window_s} 秒内打开应用接单。",
    },
    "accepted": {
        "en": "dispatch: {worker} accepted your {category} request and should arrive around "
              "{eta}. The app shows how to reach them.",
        "zh-CN": "dispatch：{worker} 已接受您的{category}请求，预计 {eta} 左右到达。"
                 "联系方式请查看应用。",
    },
    "en_route": {
        "en": "dispatch: {worker} is on the way to you ({category}).",
        "zh-CN": "dispatch：{worker} 正在前往您处（{category}）。",
    },
    "arrived": {
        "en": "dispatch: {worker} has arrived for your {category} job.",
        "zh-CN": "dispatch：{worker} 已到达，开始您的{category}工作。",
    },
    "completed": {
        "en": "dispatch: your {category} job is done. Thank you for using dispatch.",
        "zh-CN": "dispatch：您的{category}工作已完成。感谢使用 dispatch。",
    },
    "cancelled": {
        "en": "dispatch: the {category} job for {arrive_by} was cancelled. No need to go.",
        "zh-CN": "dispatch：{arrive_by} 的{category}工作已取消，无需前往。",
    },
    "reassigning": {
        "en": "dispatch: {worker} is still held up on the job before yours, so we are finding "
              "someone else for your {category} request. We will text you who is coming.",
        "zh-CN": "dispatch：{worker} 仍在忙上一单，我们正在为您的{category}请求另找人员，"
                 "确定后会短信通知您。",
    },
    "replacing": {
        "en": "dispatch: {worker} cannot come after all, so we are finding someone else for "
              "your {category} request. We will text you who is coming.",
        "zh-CN": "dispatch：{worker} 无法前来，我们正在为您的{category}请求另找人员，"
                 "确定后会短信通知您。",
    },
    "no_show": {
        "en": "dispatch: you had not reached the {category} job due {arrive_by} and your "
              "phone had gone quiet, so it went to someone else. No need to go.",
        "zh-CN": "dispatch：您未按时到达 {arrive_by} 的{category}工作，且手机已无位置更新，"
                 "该工作已转给他人。无需前往。",
    },
    "worker_free": {
        "en": "dispatch: {worker} is free now and coming to you ({category}); expected "
              "around {eta}.",
        "zh-CN": "dispatch：{worker} 现已空闲，正在前往您处（{category}），"
                 "预计 {eta} 左右到达。",
    },
    "released": {
        "en": "dispatch: the {category} job for {arrive_by} that was next after your current "
              "one went to someone else: you could no longer get there in time. No need to go.",
        "zh-CN": "dispatch：排在您当前工作之后的 {arrive_by} {category}工作已转给他人，"
                 "因为您无法及时赶到。无需前往。",
    },
    "card_declined": {
        "en": "dispatch: your card declined the hold for the {category} job on {arrive_by}, "
              "so it is no longer booked and nothing was charged. Please book again with "
              "another card.",
        "zh-CN": "dispatch：您的银行卡拒绝了 {arrive_by} {category}工作的预授权，"
                 "该预约已取消，未扣任何费用。请换一张卡重新预约。",
    },
    "hold_lapsed": {
        "en": "dispatch: the {category} job on {arrive_by} is closed: its final amount was "
              "not agreed before the card's hold lapsed, so nothing was charged.",
        "zh-CN": "dispatch：{arrive_by} 的{category}工作已关闭：最终金额在银行卡预授权失效前"
                 "未获同意，因此未扣任何费用。",
    },
    "password_reset": {
        "en": "dispatch: to set a new password, open {link} within {minutes} minutes. "
              "If you did not ask for this, ignore this text.",
        "zh-CN": "dispatch：请在 {minutes} 分钟内打开 {link} 设置新密码。"
                 "如果这不是您本人的操作，请忽略此短信。",
    },
    "signup_attempted": {
        "en": "dispatch: someone tried to sign up with your email or phone number. Nothing "
              "changed. If it was you, log in, or reset your password. If not, ignore this.",
        "zh-CN": "dispatch：有人尝试用您的邮箱或手机号注册。账户没有任何变化。"
                 "如果是您本人，请直接登录或重设密码；否则请忽略此短信。",
    },
    "tenant_intro": {
        "en": "dispatch: {organization} added this number as the contact for {unit} and will "
              "text you about repairs there through dispatch. Reply STOP to stop these texts.",
        "zh-CN": "dispatch：{organization} 将此号码登记为 {unit} 的联系电话，"
                 "并将通过 dispatch 发送维修相关短信。回复 STOP 即可退订。",
    },
    "unfilled": {
        "en": "dispatch: sorry, nobody could take your {category} request in time. "
              "Nothing was charged.",
        "zh-CN": "dispatch：抱歉，暂时没有人能及时接下您的{category}请求。未产生任何费用。",
    },
}


def render(event: str, locale: str, fields: dict[str, object]) -> str:
    """The text for `event` in `locale` (English when the locale is not translated)."""
    texts = TEMPLATES[event]
    return texts.get(locale, texts["en"]).format(**fields)
