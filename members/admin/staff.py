"""Site-wide admin set-up: staff users and roles wear Unfold's skin like the rest of the admin.

Django's autodiscovery imports only `admin` modules: `members.admin` (the lowest app's admin package) imports this
one first. Django registers User and Group with its own plain ModelAdmins; they are swapped here for Unfold's
ModelAdmin and Unfold's auth forms, as Unfold's documentation describes.
"""
import rest_framework_api_key.admin  # noqa: F401  (registers the library's own APIKey, unregistered below)
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group, User
from rest_framework_api_key.models import APIKey as LibraryAPIKey
from unfold.admin import ModelAdmin
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm

# The API key library registers its own concrete APIKey model. The storefront's keys are members.ApiKey; the
# library's table stays empty, and listing it beside ours would only send staff to the wrong page. The library's
# admin module is imported explicitly first, so the unregistration does not depend on the order of INSTALLED_APPS.
if admin.site.is_registered(LibraryAPIKey):
    admin.site.unregister(LibraryAPIKey)

for model in (User, Group):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


@admin.register(User)
class StaffUserAdmin(BaseUserAdmin, ModelAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm
    list_display = ("username", "email", "first_name", "last_name", "is_staff", "is_active", "last_login")
    list_filter = ("is_staff", "is_superuser", "is_active", "groups")
    list_per_page = 50


@admin.register(Group)
class RoleAdmin(BaseGroupAdmin, ModelAdmin):
    list_per_page = 50
